package deploy

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// An action runs only when its target still runs the version the verdict
// condemned. A verdict is about one version; by the time it is acted on, the
// pipeline may have shipped the next one, or a person may have rolled back
// already. Acting then would undo the wrong change. The actors check first
// and refuse with one of these errors; the hook records the refusal with the
// deployment (vigil_rollback_actions_total{result="refused"}).
var (
	// ErrTargetChanged: the target runs another version than the condemned one.
	ErrTargetChanged = errors.New("the target no longer runs the condemned version")
	// ErrVersionUnknown: the version the target runs cannot be told.
	ErrVersionUnknown = errors.New("the version the target runs cannot be told")
)

// Refused reports whether err is an action an actor refused for safety:
// nothing was changed.
func Refused(err error) bool {
	return errors.Is(err, ErrTargetChanged) || errors.Is(err, ErrVersionUnknown)
}

// VersionLabel is the recommended Kubernetes label that names the version of
// an application; on a pod template it is the version the workload runs.
const VersionLabel = "app.kubernetes.io/version"

// templateVersion tells the version a pod template (a spec.template as
// unstructured) runs, by the rule documented for rollback.kubernetes:
//
//  1. the pod template's app.kubernetes.io/version label, when set;
//  2. otherwise the tag of the image of the container named container; with
//     no container named in the catalog, the only container, or else the
//     one named like the service;
//  3. otherwise the version cannot be told (ErrVersionUnknown).
//
// It returns the version and where it was read, for messages.
func templateVersion(tmpl map[string]any, container, service string) (version, source string, err error) {
	labels, _, _ := unstructured.NestedStringMap(tmpl, "metadata", "labels")
	if v := labels[VersionLabel]; v != "" {
		return v, "label " + VersionLabel, nil
	}
	list, _, _ := unstructured.NestedSlice(tmpl, "spec", "containers")
	var names []string
	images := map[string]string{}
	for _, c := range list {
		m, ok := c.(map[string]any)
		if !ok {
			continue
		}
		name, _ := m["name"].(string)
		image, _ := m["image"].(string)
		names = append(names, name)
		images[name] = image
	}
	pick := container
	switch {
	case pick != "":
	case len(names) == 1:
		pick = names[0]
	default:
		pick = service
	}
	image, ok := images[pick]
	if !ok {
		if container != "" {
			return "", "", fmt.Errorf("no %s label and no container %q (containers: %s): %w", VersionLabel, container, strings.Join(names, ", "), ErrVersionUnknown)
		}
		return "", "", fmt.Errorf("no %s label, and %d containers none named %q (set rollback.kubernetes.container): %w", VersionLabel, len(names), service, ErrVersionUnknown)
	}
	tag := imageTag([]string{image})
	if tag == "" {
		return "", "", fmt.Errorf("no %s label, and the image %q of container %q has no tag: %w", VersionLabel, image, pick, ErrVersionUnknown)
	}
	return tag, fmt.Sprintf("image tag of container %q", pick), nil
}

// checkRunning refuses unless the pod template runs the condemned version.
func checkRunning(target string, tmpl map[string]any, container, service, condemned string) error {
	running, source, err := templateVersion(tmpl, container, service)
	if err != nil {
		return fmt.Errorf("%s: %w", target, err)
	}
	if running != condemned {
		return fmt.Errorf("%s runs %s (%s), not %s that the verdict condemned; someone rolled it forward or back already: %w",
			target, running, source, condemned, ErrTargetChanged)
	}
	return nil
}
