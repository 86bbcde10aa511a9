package deploy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/peers/kube"
)

// These tests run against a real kube-apiserver and kube-controller-manager
// (internal/peers/kube, built by `make peers`): the controllers make the
// ReplicaSets and ControllerRevisions a rollback reads, and kubectl rollout
// undo is the reference a rollback is compared with. Each test works in its
// own namespace of the package's one control plane.

func TestMain(m *testing.M) {
	code := m.Run()
	kube.StopShared()
	os.Exit(code)
}

var ctx = context.Background()

// image is the image of checkout at version.
func image(version string) string { return "registry.example.com:5000/shop/checkout:" + version }

// release is one version shipped: a pod template and the change cause the
// pipeline recorded with it.
type release struct {
	version string
	tmpl    corev1.PodTemplateSpec
}

// ship is a release of checkout at version (image tag), with extra labels.
func ship(version string, labels ...string) release {
	l := map[string]string{"app": "checkout"}
	for i := 0; i+1 < len(labels); i += 2 {
		l[labels[i]] = labels[i+1]
	}
	return release{version: version, tmpl: kube.PodTemplate(l, image(version))}
}

// shipDeployment creates Deployment checkout in ns and rolls it through the
// releases, waiting for the Deployment controller to record each revision.
func shipDeployment(t *testing.T, cs kubernetes.Interface, ns string, releases ...release) *appsv1.Deployment {
	t.Helper()
	var rs []kube.Release
	for i, r := range releases {
		rs = append(rs, kube.Release{Cause: fmt.Sprintf("ship %s #%d", r.version, i+1), Template: r.tmpl})
	}
	return kube.ShipDeployment(t, cs, ns, "checkout", map[string]string{"app": "checkout"}, rs...)
}

// rollback runs the actor on the catalog entry k of service checkout for a
// verdict that condemns version.
func rollback(a KubernetesActor, k catalog.KubernetesRollback, version string) (string, error) {
	svc := catalog.Service{Name: "checkout", Namespace: k.Namespace, Rollback: catalog.Rollback{Kubernetes: &k}}
	d := Deployment{Service: "checkout", Version: version}
	v := verdict.Verdict{Service: "checkout", Version: version}
	v.Decision, v.Reason = verdict.Rollback, "test"
	return a.Rollback(ctx, svc, d, v)
}

func actor(t *testing.T, c *kube.Cluster) KubernetesActor {
	t.Helper()
	dc, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	return KubernetesActor{Client: dc}
}

func TestTemplateVersion(t *testing.T) {
	tmpl := func(labels map[string]any, containers ...string) map[string]any {
		var cs []any
		for i := 0; i+1 < len(containers); i += 2 {
			cs = append(cs, map[string]any{"name": containers[i], "image": containers[i+1]})
		}
		return map[string]any{"metadata": map[string]any{"labels": labels}, "spec": map[string]any{"containers": cs}}
	}
	for _, tc := range []struct {
		name       string
		tmpl       map[string]any
		container  string
		want, from string
		unknown    bool
	}{
		{"label wins over the image", tmpl(map[string]any{VersionLabel: "2.4.0"}, "app", "shop/checkout:v9"), "", "2.4.0", "label", false},
		{"only container", tmpl(nil, "app", "shop/checkout:v2"), "", "v2", `container "app"`, false},
		{"registry port and digest", tmpl(nil, "app", "registry.example.com:5000/shop/checkout:v2@sha256:0123"), "", "v2", "image tag", false},
		{"container named like the service", tmpl(nil, "envoy", "envoy:v1.30", "checkout", "shop/checkout:v3"), "", "v3", `container "checkout"`, false},
		{"container named in the catalog", tmpl(nil, "envoy", "envoy:v1.30", "app", "shop/checkout:v3"), "app", "v3", `container "app"`, false},
		{"several containers, none named", tmpl(nil, "envoy", "envoy:v1.30", "app", "shop/checkout:v3"), "", "", "", true},
		{"catalog container missing", tmpl(nil, "app", "shop/checkout:v3"), "main", "", "", true},
		{"no tag", tmpl(nil, "app", "registry.example.com:5000/shop/checkout"), "", "", "", true},
		{"digest only", tmpl(nil, "app", "shop/checkout@sha256:0123"), "", "", "", true},
		{"no containers", tmpl(nil), "", "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, from, err := templateVersion(tc.tmpl, tc.container, "checkout")
			if tc.unknown {
				if !errors.Is(err, ErrVersionUnknown) || !Refused(err) {
					t.Fatalf("templateVersion = %q, %v; want ErrVersionUnknown", got, err)
				}
				return
			}
			if err != nil || got != tc.want || !strings.Contains(from, tc.from) {
				t.Fatalf("templateVersion = %q (%s), %v; want %q (%s)", got, from, err, tc.want, tc.from)
			}
		})
	}
}

// TestKubernetesRollbackDeployment: the actor undoes a Deployment that runs
// the condemned version, and refuses when it runs another one.
func TestKubernetesRollbackDeployment(t *testing.T) {
	c := kube.Shared(t)
	cs := c.Client(t)
	a := actor(t, c)
	twoContainers := func(version string) release {
		r := ship(version)
		r.tmpl.Spec.Containers = append(r.tmpl.Spec.Containers, corev1.Container{Name: "envoy", Image: "envoyproxy/envoy:v1.30"})
		return r
	}
	withEnv := func(r release) release {
		r.tmpl.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "POOL", Value: "32"}}
		return r
	}
	tests := []struct {
		name      string
		releases  []release
		before    func(t *testing.T, ns string) // someone else's change before the verdict is acted on
		container string
		condemned string
		wantImage string // "" : the Deployment must be left unchanged
		wantRev   string
		wantErr   error // ErrTargetChanged, ErrVersionUnknown, or errAny
		wantMsg   string
	}{
		{name: "back to the previous revision", releases: []release{ship("v1"), ship("v2")}, condemned: "v2",
			wantImage: image("v1"), wantRev: "3", wantMsg: "from v2 to revision 1, v1"},
		{name: "to the newest other version", releases: []release{ship("v1"), ship("v2"), ship("v3"), ship("v4")}, condemned: "v4",
			wantImage: image("v3"), wantRev: "5", wantMsg: "to revision 3, v3"},
		{name: "skips revisions of the condemned version", releases: []release{ship("v1"), ship("v2"), withEnv(ship("v2"))}, condemned: "v2",
			wantImage: image("v1"), wantRev: "4", wantMsg: "to revision 1, v1"},
		{name: "version from app.kubernetes.io/version", releases: []release{ship("same", VersionLabel, "1.0"), ship("same", VersionLabel, "1.1")}, condemned: "1.1",
			wantImage: image("same"), wantRev: "3", wantMsg: "to revision 1, 1.0"},
		{name: "catalog names the container", releases: []release{twoContainers("v1"), twoContainers("v2")}, container: "app", condemned: "v2",
			wantImage: image("v1"), wantRev: "3"},
		{name: "already runs the next version", releases: []release{ship("v1"), ship("v2"), ship("v3")}, condemned: "v2",
			wantErr: ErrTargetChanged, wantMsg: "runs v3 (image tag of container \"app\"), not v2"},
		{name: "rolled back by someone else", releases: []release{ship("v1"), ship("v2")}, condemned: "v2",
			before: func(t *testing.T, ns string) {
				c.Kubectl(t, "", "rollout", "undo", "deployment/checkout", "-n", ns)
				kube.WaitRevision(t, cs, ns, "checkout", 3)
			},
			wantErr: ErrTargetChanged, wantMsg: "runs v1"},
		{name: "version cannot be told", releases: []release{twoContainers("v1"), twoContainers("v2")}, condemned: "v2",
			wantErr: ErrVersionUnknown, wantMsg: "set rollback.kubernetes.container"},
		{name: "paused", releases: []release{ship("v1"), ship("v2")}, condemned: "v2",
			before:  func(t *testing.T, ns string) { c.Kubectl(t, "", "rollout", "pause", "deployment/checkout", "-n", ns) },
			wantErr: errAny, wantMsg: "is paused"},
		{name: "no earlier revision", releases: []release{ship("v2")}, condemned: "v2",
			wantErr: errAny, wantMsg: "no earlier revision"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := c.Namespace(t, nil)
			shipDeployment(t, cs, ns, tc.releases...)
			if tc.before != nil {
				tc.before(t, ns)
			}
			before, err := cs.AppsV1().Deployments(ns).Get(ctx, "checkout", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			target, err := rollback(a, catalog.KubernetesRollback{Kind: catalog.KindDeployment, Namespace: ns, Name: "checkout", Container: tc.container}, tc.condemned)
			if !strings.HasPrefix(target, "deployment/"+ns+"/checkout") {
				t.Errorf("target = %q", target)
			}
			after, gerr := cs.AppsV1().Deployments(ns).Get(ctx, "checkout", metav1.GetOptions{})
			if gerr != nil {
				t.Fatal(gerr)
			}
			if tc.wantErr != nil {
				if err == nil || (tc.wantErr != errAny && !errors.Is(err, tc.wantErr)) || (tc.wantErr == errAny && Refused(err)) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantMsg) {
					t.Errorf("err = %v, want it to say %q", err, tc.wantMsg)
				}
				// (The controller writes the status; the spec and annotations are Vigil's to change.)
				if after.Generation != before.Generation || !maps.Equal(after.Annotations, before.Annotations) {
					t.Errorf("the Deployment was written: generation %d → %d, annotations %v → %v", before.Generation, after.Generation, before.Annotations, after.Annotations)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(target, tc.wantMsg) {
				t.Errorf("target = %q, want it to say %q", target, tc.wantMsg)
			}
			after = kube.WaitRevision(t, cs, ns, "checkout", mustAtoi(t, tc.wantRev))
			if img := after.Spec.Template.Spec.Containers[0].Image; img != tc.wantImage {
				t.Errorf("image after rollback = %s, want %s", img, tc.wantImage)
			}
			if _, ok := after.Spec.Template.Labels[podTemplateHashLabel]; ok {
				t.Error("pod-template-hash label copied into the Deployment's template")
			}
		})
	}
}

var errAny = errors.New("any error that is not a refusal")

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestKubernetesRollbackLikeKubectl: two Deployments with the same history;
// Vigil undoes one, `kubectl rollout undo` the other. They must agree field
// by field: template, annotations (the change cause comes back), revision,
// generation.
func TestKubernetesRollbackLikeKubectl(t *testing.T) {
	c := kube.Shared(t)
	cs := c.Client(t)
	a := actor(t, c)
	history := []release{ship("v1"), ship("v2")}
	vigilNS, kubectlNS := c.Namespace(t, nil), c.Namespace(t, nil)
	shipDeployment(t, cs, vigilNS, history...)
	shipDeployment(t, cs, kubectlNS, history...)
	if _, err := rollback(a, catalog.KubernetesRollback{Kind: catalog.KindDeployment, Namespace: vigilNS, Name: "checkout"}, "v2"); err != nil {
		t.Fatal(err)
	}
	c.Kubectl(t, "", "rollout", "undo", "deployment/checkout", "-n", kubectlNS)
	byVigil := kube.WaitRevision(t, cs, vigilNS, "checkout", 3)
	byKubectl := kube.WaitRevision(t, cs, kubectlNS, "checkout", 3)
	if d := kube.DeploymentDiff(byKubectl, byVigil); d != "" {
		t.Errorf("Vigil's rollback differs from kubectl rollout undo (-kubectl +vigil):\n%s", d)
	}
	if got := byVigil.Annotations[changeCauseAnnotation]; got != "ship v1 #1" {
		t.Errorf("change-cause = %q, want the one of revision 1", got)
	}
}

// conflictingClient lets the test change the workload on the API server
// between the actor's read and its write, the first time the actor writes.
type conflictingClient struct {
	dynamic.Interface
	change  func()
	patches *atomic.Int32
	errs    chan error
}

func (c conflictingClient) Resource(gvr schema.GroupVersionResource) dynamic.NamespaceableResourceInterface {
	return conflictingResource{NamespaceableResourceInterface: c.Interface.Resource(gvr), c: c}
}

type conflictingResource struct {
	dynamic.NamespaceableResourceInterface
	c conflictingClient
}

func (r conflictingResource) Namespace(ns string) dynamic.ResourceInterface {
	return conflictingNamespaced{ResourceInterface: r.NamespaceableResourceInterface.Namespace(ns), c: r.c}
}

type conflictingNamespaced struct {
	dynamic.ResourceInterface
	c conflictingClient
}

func (r conflictingNamespaced) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, sub ...string) (*unstructured.Unstructured, error) {
	if r.c.patches.Add(1) == 1 {
		r.c.change()
	}
	obj, err := r.ResourceInterface.Patch(ctx, name, pt, data, opts, sub...)
	r.c.errs <- err
	return obj, err
}

// TestKubernetesRollbackConflict: the Deployment changes between the
// actor's read and its write. The API server answers Conflict to the write;
// the actor reads again and checks again: it refuses when the Deployment
// now runs another version, and rolls back without undoing the other
// change when it still runs the condemned one. It never clobbers.
func TestKubernetesRollbackConflict(t *testing.T) {
	c := kube.Shared(t)
	cs := c.Client(t)
	dc, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		change  func(d *appsv1.Deployment)
		refused bool
		check   func(t *testing.T, d *appsv1.Deployment)
	}{
		{
			name:    "the pipeline ships v3 meanwhile",
			change:  func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = image("v3") },
			refused: true,
			check: func(t *testing.T, d *appsv1.Deployment) {
				if img := d.Spec.Template.Spec.Containers[0].Image; img != image("v3") {
					t.Errorf("image = %s, want v3 kept", img)
				}
			},
		},
		{
			name:   "someone scales it meanwhile",
			change: func(d *appsv1.Deployment) { d.Spec.Replicas = ptrTo(int32(3)) },
			check: func(t *testing.T, d *appsv1.Deployment) {
				if img := d.Spec.Template.Spec.Containers[0].Image; img != image("v1") {
					t.Errorf("image = %s, want v1 after the rollback", img)
				}
				if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
					t.Errorf("replicas = %v, want the 3 set meanwhile", d.Spec.Replicas)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := c.Namespace(t, nil)
			shipDeployment(t, cs, ns, ship("v1"), ship("v2"))
			cc := conflictingClient{Interface: dc, patches: &atomic.Int32{}, errs: make(chan error, 10), change: func() {
				err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
					d, err := cs.AppsV1().Deployments(ns).Get(ctx, "checkout", metav1.GetOptions{})
					if err != nil {
						return err
					}
					tc.change(d)
					_, err = cs.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
					return err
				})
				if err != nil {
					t.Error(err)
				}
			}}
			_, err := rollback(KubernetesActor{Client: cc}, catalog.KubernetesRollback{Kind: catalog.KindDeployment, Namespace: ns, Name: "checkout"}, "v2")
			close(cc.errs)
			var results []error
			for e := range cc.errs {
				results = append(results, e)
			}
			if len(results) == 0 || !apierrors.IsConflict(results[0]) {
				t.Fatalf("first write: %v, want a Conflict from the API server", results)
			}
			if tc.refused {
				if !errors.Is(err, ErrTargetChanged) {
					t.Fatalf("err = %v, want ErrTargetChanged", err)
				}
				if len(results) != 1 {
					t.Errorf("%d writes, want only the one that conflicted", len(results))
				}
			} else if err != nil || results[len(results)-1] != nil {
				// (The controller's status writes can conflict with a retry too.)
				t.Fatalf("err = %v, writes %v; want a retry to succeed", err, results)
			}
			d, err := cs.AppsV1().Deployments(ns).Get(ctx, "checkout", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, d)
		})
	}
}

func ptrTo[T any](v T) *T { return &v }
