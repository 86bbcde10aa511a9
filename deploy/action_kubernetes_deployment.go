package deploy

import (
	"context"
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// Annotations and labels Kubernetes keeps on Deployments and their ReplicaSets.
const (
	revisionAnnotation    = "deployment.kubernetes.io/revision"
	changeCauseAnnotation = "kubernetes.io/change-cause"
	podTemplateHashLabel  = "pod-template-hash"
)

// deploymentOwnAnnotations stay the Deployment's when it is rolled back;
// every other annotation comes back from the ReplicaSet rolled back to, as
// `kubectl rollout undo` does (the Deployment controller copied them there
// when it made that ReplicaSet).
var deploymentOwnAnnotations = map[string]bool{
	"kubectl.kubernetes.io/last-applied-configuration": true,
	revisionAnnotation:                          true,
	"deployment.kubernetes.io/revision-history": true,
	"deployment.kubernetes.io/desired-replicas": true,
	"deployment.kubernetes.io/max-replicas":     true,
	"deprecated.deployment.rollback.to":         true,
}

// undoDeployment rolls a Deployment that runs the condemned version back to
// its newest ReplicaSet that runs another version (normally the previous
// revision, as `kubectl rollout undo`), with a JSON patch of the template and
// annotations — the patch kubectl sends — conditional on the resourceVersion
// read.
func (a KubernetesActor) undoDeployment(ctx context.Context, w workloadRef, condemned string) (string, error) {
	deps := a.Client.Resource(deploymentsResource).Namespace(w.namespace)
	d, err := deps.Get(ctx, w.name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("get %s: %w", w.target, err)
	}
	current, err := podTemplate(d)
	if err != nil {
		return "", err
	}
	if err := checkRunning(w.target, current, w.container, w.service, condemned); err != nil {
		return "", err
	}
	if paused, _, _ := unstructured.NestedBool(d.Object, "spec", "paused"); paused {
		return "", fmt.Errorf("%s is paused; resume it before rolling back", w.target)
	}
	rss, err := a.owned(ctx, replicaSetsResource, d, w)
	if err != nil {
		return "", err
	}
	// The newest ReplicaSet of this Deployment whose template differs from
	// the Deployment's and runs another version than the condemned one.
	var prev *unstructured.Unstructured
	var prevTmpl map[string]any
	var prevRev int64
	for i := range rss {
		rs := &rss[i]
		r := revision(rs.GetAnnotations())
		if r <= prevRev {
			continue
		}
		tmpl, err := podTemplate(rs)
		if err != nil {
			continue
		}
		unstructured.RemoveNestedField(tmpl, "metadata", "labels", podTemplateHashLabel)
		if !w.rollsBackTo(tmpl, current, condemned) {
			continue
		}
		prev, prevTmpl, prevRev = rs, tmpl, r
	}
	if prev == nil {
		return "", fmt.Errorf("%s (revision %d) has no earlier revision that runs another version than %s to roll back to", w.target, revision(d.GetAnnotations()), condemned)
	}
	annotations := map[string]string{}
	for k, v := range d.GetAnnotations() {
		if deploymentOwnAnnotations[k] {
			annotations[k] = v
		}
	}
	for k, v := range prev.GetAnnotations() {
		if !deploymentOwnAnnotations[k] {
			annotations[k] = v
		}
	}
	patch, err := json.Marshal([]map[string]any{
		{"op": "replace", "path": "/spec/template", "value": prevTmpl},
		{"op": "add", "path": "/metadata/annotations", "value": annotations},
		// The precondition: a Deployment changed since it was read makes
		// the API server answer Conflict instead of applying the patch.
		{"op": "replace", "path": "/metadata/resourceVersion", "value": d.GetResourceVersion()},
	})
	if err != nil {
		return "", err
	}
	if _, err := deps.Patch(ctx, w.name, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: "vigil"}); err != nil {
		return "", fmt.Errorf("roll back %s to revision %d: %w", w.target, prevRev, err)
	}
	to, _, err := templateVersion(prevTmpl, w.container, w.service)
	if err != nil {
		to = "version unknown"
	}
	return fmt.Sprintf("from %s to revision %d, %s", condemned, prevRev, to), nil
}
