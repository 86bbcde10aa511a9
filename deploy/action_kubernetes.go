package deploy

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/deploy/verdict"
)

// The resources the rollback reads and writes. The dynamic client is used
// rather than the typed clientset, whose scheme of every API group would
// double the size of the binary.
var (
	deploymentsResource = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	replicaSetsResource = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}
)

// Annotations Kubernetes keeps on Deployments and their ReplicaSets.
const (
	revisionAnnotation    = "deployment.kubernetes.io/revision"
	changeCauseAnnotation = "kubernetes.io/change-cause"
	podTemplateHashLabel  = "pod-template-hash"
)

// KubernetesActor rolls a Deployment back to its previous revision with
// `kubectl rollout undo` semantics: the pod template of the ReplicaSet with
// the highest revision below the current one becomes the Deployment's
// template again, and the Deployment controller rolls it out.
type KubernetesActor struct {
	Client dynamic.Interface
}

// KubernetesConfig is the deploy.kubernetes section: how Vigil reaches the
// Kubernetes API for rollbacks.
type KubernetesConfig struct {
	// Enabled turns the Kubernetes rollback action on.
	Enabled bool `yaml:"enabled"`
	// Kubeconfig is a kubeconfig file; empty means the in-cluster service account.
	Kubeconfig string `yaml:"kubeconfig"`
}

// NewKubernetesActor connects to the API server described by cfg.
func NewKubernetesActor(cfg KubernetesConfig) (KubernetesActor, error) {
	var rc *rest.Config
	var err error
	if cfg.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return KubernetesActor{}, fmt.Errorf("deploy.kubernetes: %w", err)
	}
	rc.UserAgent = "vigil"
	c, err := dynamic.NewForConfig(rc)
	if err != nil {
		return KubernetesActor{}, fmt.Errorf("deploy.kubernetes: %w", err)
	}
	return KubernetesActor{Client: c}, nil
}

// Kind implements Actor.
func (KubernetesActor) Kind() string { return "kubernetes" }

// Applies implements Actor.
func (KubernetesActor) Applies(svc catalog.Service) bool { return svc.Rollback.Kubernetes != nil }

// Rollback implements Actor.
func (a KubernetesActor) Rollback(ctx context.Context, svc catalog.Service, _ Deployment, _ verdict.Verdict) (string, error) {
	k := svc.Rollback.Kubernetes
	target := "deployment/" + k.Namespace + "/" + k.Deployment
	if a.Client == nil {
		return target, errors.New("no Kubernetes client configured (deploy.kubernetes)")
	}
	rev, err := a.Undo(ctx, k.Namespace, k.Deployment)
	if err != nil {
		return target, err
	}
	return fmt.Sprintf("%s (to revision %d)", target, rev), nil
}

// Undo rolls the Deployment back to its previous revision and returns that revision.
func (a KubernetesActor) Undo(ctx context.Context, namespace, name string) (int64, error) {
	deps := a.Client.Resource(deploymentsResource).Namespace(namespace)
	d, err := deps.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return 0, fmt.Errorf("get deployment %s/%s: %w", namespace, name, err)
	}
	if paused, _, _ := unstructured.NestedBool(d.Object, "spec", "paused"); paused {
		return 0, fmt.Errorf("deployment %s/%s is paused; resume it before rolling back", namespace, name)
	}
	selMap, found, err := unstructured.NestedMap(d.Object, "spec", "selector")
	if err != nil || !found {
		return 0, fmt.Errorf("deployment %s/%s has no spec.selector", namespace, name)
	}
	var ls metav1.LabelSelector
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(selMap, &ls); err != nil {
		return 0, fmt.Errorf("deployment %s/%s selector: %w", namespace, name, err)
	}
	sel, err := metav1.LabelSelectorAsSelector(&ls)
	if err != nil {
		return 0, fmt.Errorf("deployment %s/%s selector: %w", namespace, name, err)
	}
	rss, err := a.Client.Resource(replicaSetsResource).Namespace(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return 0, fmt.Errorf("list replicasets of %s/%s: %w", namespace, name, err)
	}
	current := revision(d.GetAnnotations())
	var prev *unstructured.Unstructured
	var prevRev int64
	for i := range rss.Items {
		rs := &rss.Items[i]
		if !controlledBy(rs, d) {
			continue
		}
		r := revision(rs.GetAnnotations())
		if r > 0 && r < current && r > prevRev {
			prev, prevRev = rs, r
		}
	}
	if prev == nil {
		return 0, fmt.Errorf("deployment %s/%s (revision %d) has no previous revision to roll back to", namespace, name, current)
	}
	tmpl, found, err := unstructured.NestedMap(prev.Object, "spec", "template")
	if err != nil || !found {
		return 0, fmt.Errorf("replicaset %s/%s has no pod template", namespace, prev.GetName())
	}
	unstructured.RemoveNestedField(tmpl, "metadata", "labels", podTemplateHashLabel)
	if err := unstructured.SetNestedMap(d.Object, tmpl, "spec", "template"); err != nil {
		return 0, fmt.Errorf("set template of %s/%s: %w", namespace, name, err)
	}
	if cause, ok := prev.GetAnnotations()[changeCauseAnnotation]; ok {
		an := d.GetAnnotations()
		if an == nil {
			an = map[string]string{}
		}
		an[changeCauseAnnotation] = cause
		d.SetAnnotations(an)
	}
	if _, err := deps.Update(ctx, d, metav1.UpdateOptions{FieldManager: "vigil"}); err != nil {
		return 0, fmt.Errorf("roll back deployment %s/%s to revision %d: %w", namespace, name, prevRev, err)
	}
	return prevRev, nil
}

func controlledBy(obj, owner *unstructured.Unstructured) bool {
	for _, ref := range obj.GetOwnerReferences() {
		if ref.Controller != nil && *ref.Controller && ref.UID == owner.GetUID() {
			return true
		}
	}
	return false
}

func revision(annotations map[string]string) int64 {
	r, err := strconv.ParseInt(annotations[revisionAnnotation], 10, 64)
	if err != nil {
		return 0
	}
	return r
}
