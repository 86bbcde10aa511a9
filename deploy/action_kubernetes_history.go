package deploy

import (
	"context"
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// undoFromHistory rolls a StatefulSet or a DaemonSet that runs the condemned
// version back to its newest ControllerRevision that runs another version
// (normally the previous revision, as `kubectl rollout undo`). A revision's
// data is the strategic merge patch that restores its pod template — kubectl
// applies exactly that — sent here with the resourceVersion read as a
// precondition.
func (a KubernetesActor) undoFromHistory(ctx context.Context, res schema.GroupVersionResource, w workloadRef, condemned string) (string, error) {
	objs := a.Client.Resource(res).Namespace(w.namespace)
	obj, err := objs.Get(ctx, w.name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("get %s: %w", w.target, err)
	}
	current, err := podTemplate(obj)
	if err != nil {
		return "", err
	}
	if err := checkRunning(w.target, current, w.container, w.service, condemned); err != nil {
		return "", err
	}
	revs, err := a.owned(ctx, controllerRevisionsResource, obj, w)
	if err != nil {
		return "", err
	}
	var prevData map[string]any
	var prevTmpl map[string]any
	var prevRev int64
	for i := range revs {
		cr := &revs[i]
		r, _, _ := unstructured.NestedInt64(cr.Object, "revision")
		if r <= prevRev {
			continue
		}
		data, found, err := unstructured.NestedMap(cr.Object, "data")
		if err != nil || !found {
			continue
		}
		tmpl, found, err := unstructured.NestedMap(data, "spec", "template")
		if err != nil || !found {
			continue
		}
		delete(tmpl, "$patch")
		if !w.rollsBackTo(tmpl, current, condemned) {
			continue
		}
		prevData, prevTmpl, prevRev = data, tmpl, r
	}
	if prevData == nil {
		return "", fmt.Errorf("%s has no earlier revision that runs another version than %s to roll back to", w.target, condemned)
	}
	// The precondition: a workload changed since it was read makes the API
	// server answer Conflict instead of applying the patch.
	if err := unstructured.SetNestedField(prevData, obj.GetResourceVersion(), "metadata", "resourceVersion"); err != nil {
		return "", err
	}
	patch, err := json.Marshal(prevData)
	if err != nil {
		return "", err
	}
	if _, err := objs.Patch(ctx, w.name, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: "vigil"}); err != nil {
		return "", fmt.Errorf("roll back %s to revision %d: %w", w.target, prevRev, err)
	}
	to, _, err := templateVersion(prevTmpl, w.container, w.service)
	if err != nil {
		to = "version unknown"
	}
	return fmt.Sprintf("from %s to revision %d, %s", condemned, prevRev, to), nil
}
