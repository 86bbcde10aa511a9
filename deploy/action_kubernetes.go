package deploy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/deploy/verdict"
)

// The resources the rollbacks read and write. The dynamic client is used
// rather than the typed clientset, whose scheme of every API group would
// double the size of the binary.
var (
	deploymentsResource         = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	replicaSetsResource         = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}
	statefulSetsResource        = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}
	daemonSetsResource          = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "daemonsets"}
	controllerRevisionsResource = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "controllerrevisions"}
	rolloutsResource            = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}
)

// KubernetesActor rolls a workload back through the Kubernetes API:
//
//   - a Deployment with `kubectl rollout undo` semantics: the pod template
//     (and annotations) of its previous ReplicaSet become the Deployment's
//     again, and the Deployment controller rolls that out;
//   - a StatefulSet or a DaemonSet likewise, from its ControllerRevisions;
//   - an Argo Rollout is aborted (status.abort, as `kubectl argo rollouts
//     abort` does): Argo scales the canary down and keeps the stable version.
//
// Before writing, it checks that the workload still runs the condemned
// version and refuses otherwise (see templateVersion for how the running
// version is told). Every write carries the resourceVersion it was computed
// from: when the workload changed in between, the API server answers
// Conflict and the actor reads it again, checks again, and only then acts.
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
	// ServiceAccountDir is where the pod's service account is mounted in
	// cluster (token and ca.crt), read with the API server's address from
	// KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT. The token file is
	// re-read as the kubelet rotates it.
	ServiceAccountDir string `yaml:"service_account_dir"`
}

// DefaultServiceAccountDir is where Kubernetes mounts a pod's service account.
const DefaultServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// Validate names the first bad key.
func (c KubernetesConfig) Validate() error {
	if c.Kubeconfig != "" && c.ServiceAccountDir != "" {
		return errors.New("kubeconfig and service_account_dir: set one (kubeconfig outside a cluster, the service account inside)")
	}
	return nil
}

// NewKubernetesActor connects to the API server described by cfg.
func NewKubernetesActor(cfg KubernetesConfig) (KubernetesActor, error) {
	if err := cfg.Validate(); err != nil {
		return KubernetesActor{}, fmt.Errorf("deploy.kubernetes.%w", err)
	}
	var rc *rest.Config
	var err error
	if cfg.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	} else {
		rc, err = inClusterConfig(cfg.ServiceAccountDir)
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

// inClusterConfig is the configuration of a pod's service account mounted
// in dir (DefaultServiceAccountDir when empty): what rest.InClusterConfig
// reads, from a directory that can be chosen.
func inClusterConfig(dir string) (*rest.Config, error) {
	if dir == "" {
		dir = DefaultServiceAccountDir
	}
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, errors.New("not in a Kubernetes pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset): set kubeconfig to reach a cluster from outside")
	}
	token, ca := filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
	for _, f := range []string{token, ca} {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("service account: %w (is a token mounted? automountServiceAccountToken or a projected volume)", err)
		}
		if len(strings.TrimSpace(string(b))) == 0 {
			return nil, fmt.Errorf("service account: %s is empty", f)
		}
	}
	return &rest.Config{
		Host:            "https://" + net.JoinHostPort(host, port),
		TLSClientConfig: rest.TLSClientConfig{CAFile: ca},
		BearerTokenFile: token,
	}, nil
}

// Kind implements Actor.
func (KubernetesActor) Kind() string { return "kubernetes" }

// Applies implements Actor.
func (KubernetesActor) Applies(svc catalog.Service) bool { return svc.Rollback.Kubernetes != nil }

// Rollback implements Actor. It acts on the version the verdict condemned
// (the deployment's when the verdict names none).
func (a KubernetesActor) Rollback(ctx context.Context, svc catalog.Service, d Deployment, v verdict.Verdict) (string, error) {
	k := svc.Rollback.Kubernetes
	kind := k.Kind
	if kind == "" {
		kind = catalog.KindDeployment
	}
	name := first(k.Name, k.Deployment, svc.Name)
	target := strings.ToLower(kind) + "/" + k.Namespace + "/" + name
	if a.Client == nil {
		return target, errors.New("no Kubernetes client configured (deploy.kubernetes)")
	}
	condemned := first(v.Version, d.Version)
	if condemned == "" {
		return target, fmt.Errorf("%s: the verdict names no version: %w", target, ErrVersionUnknown)
	}
	w := workloadRef{kind: kind, namespace: k.Namespace, name: name, container: k.Container, service: svc.Name, target: target}
	var done string
	// Every write is conditional on the resourceVersion read: on Conflict,
	// read again, check the version again, and try again.
	err := retry.RetryOnConflict(wait.Backoff{Steps: 5, Duration: 50 * time.Millisecond, Factor: 2, Jitter: 0.1}, func() error {
		var err error
		switch kind {
		case catalog.KindDeployment:
			done, err = a.undoDeployment(ctx, w, condemned)
		case catalog.KindStatefulSet:
			done, err = a.undoFromHistory(ctx, statefulSetsResource, w, condemned)
		case catalog.KindDaemonSet:
			done, err = a.undoFromHistory(ctx, daemonSetsResource, w, condemned)
		case catalog.KindRollout:
			done, err = a.abortRollout(ctx, w, condemned)
		default:
			err = fmt.Errorf("rollback.kubernetes.kind %q is not supported", kind)
		}
		return err
	})
	if err != nil {
		return target, err
	}
	return target + " (" + done + ")", nil
}

// workloadRef is the workload a rollback acts on.
type workloadRef struct {
	kind, namespace, name string
	container, service    string // to tell the version it runs
	target                string // kind/namespace/name, for messages
}

// template returns an object's spec.template.
func podTemplate(obj *unstructured.Unstructured) (map[string]any, error) {
	tmpl, found, err := unstructured.NestedMap(obj.Object, "spec", "template")
	if err != nil || !found {
		return nil, fmt.Errorf("%s %s/%s has no spec.template", strings.ToLower(obj.GetKind()), obj.GetNamespace(), obj.GetName())
	}
	return tmpl, nil
}

// owned lists the objects of res (ReplicaSets, ControllerRevisions) that
// the workload's selector selects and the workload controls: its history.
func (a KubernetesActor) owned(ctx context.Context, res schema.GroupVersionResource, workload *unstructured.Unstructured, w workloadRef) ([]unstructured.Unstructured, error) {
	selMap, found, err := unstructured.NestedMap(workload.Object, "spec", "selector")
	if err != nil || !found {
		return nil, fmt.Errorf("%s has no spec.selector", w.target)
	}
	var ls metav1.LabelSelector
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(selMap, &ls); err != nil {
		return nil, fmt.Errorf("%s selector: %w", w.target, err)
	}
	sel, err := metav1.LabelSelectorAsSelector(&ls)
	if err != nil {
		return nil, fmt.Errorf("%s selector: %w", w.target, err)
	}
	list, err := a.Client.Resource(res).Namespace(w.namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("list %s of %s: %w", res.Resource, w.target, err)
	}
	var out []unstructured.Unstructured
	for _, o := range list.Items {
		if controlledBy(&o, workload) {
			out = append(out, o)
		}
	}
	return out, nil
}

// rollsBackTo: an earlier revision's template is one to roll back to when
// it differs from the current one and does not run the condemned version.
func (w workloadRef) rollsBackTo(tmpl, current map[string]any, condemned string) bool {
	if equality.Semantic.DeepEqual(tmpl, current) {
		return false
	}
	v, _, err := templateVersion(tmpl, w.container, w.service)
	return err != nil || v != condemned
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
