package deploy

import (
	"context"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// abortRollout aborts an Argo Rollouts update that runs the condemned
// version, as `kubectl argo rollouts abort` does: a merge patch of
// status.abort=true on the status subresource (on the Rollout itself when
// its CRD has no status subresource). Argo then scales the canary (or the
// preview) down and keeps the stable ReplicaSet; spec.template still names
// the condemned version, so the Rollout stays Degraded until the pipeline
// ships a fix or reverts the template. Argo's own analysis need not be in
// use: Vigil's verdict is enough to abort.
//
// A Rollout already aborted was rolled back by someone else (refused); one
// whose update is complete (the stable ReplicaSet is the current one) cannot
// be aborted, and the error says to undo it instead.
func (a KubernetesActor) abortRollout(ctx context.Context, w workloadRef, condemned string) (string, error) {
	ros := a.Client.Resource(rolloutsResource).Namespace(w.namespace)
	ro, err := ros.Get(ctx, w.name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("get %s: %w", w.target, err)
	}
	tmpl, err := podTemplate(ro)
	if err != nil {
		return "", err
	}
	if err := checkRunning(w.target, tmpl, w.container, w.service, condemned); err != nil {
		return "", err
	}
	if aborted, _, _ := unstructured.NestedBool(ro.Object, "status", "abort"); aborted {
		return "", fmt.Errorf("%s: the update to %s is already aborted: %w", w.target, condemned, ErrTargetChanged)
	}
	stable, _, _ := unstructured.NestedString(ro.Object, "status", "stableRS")
	currentHash, _, _ := unstructured.NestedString(ro.Object, "status", "currentPodHash")
	if stable != "" && stable == currentHash {
		return "", fmt.Errorf("%s: %s is fully promoted (stable ReplicaSet %s): an abort would do nothing; undo it (kubectl argo rollouts undo) or ship the previous version", w.target, condemned, stable)
	}
	patch, err := json.Marshal(map[string]any{
		// The precondition: a Rollout changed since it was read makes the
		// API server answer Conflict instead of applying the patch.
		"metadata": map[string]any{"resourceVersion": ro.GetResourceVersion()},
		"status":   map[string]any{"abort": true},
	})
	if err != nil {
		return "", err
	}
	_, err = ros.Patch(ctx, w.name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "vigil"}, "status")
	if apierrors.IsNotFound(err) {
		_, err = ros.Patch(ctx, w.name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "vigil"})
	}
	if err != nil {
		return "", fmt.Errorf("abort %s: %w", w.target, err)
	}
	return fmt.Sprintf("aborted the update to %s; stable ReplicaSet %s", condemned, first(stable, "unknown")), nil
}
