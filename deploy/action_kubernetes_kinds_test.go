package deploy

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/internal/peers/kube"
)

// historyWorkload is a StatefulSet or a DaemonSet under test.
type historyWorkload struct {
	kind string
	get  func(cs kubernetes.Interface, ns string) (corev1.PodTemplateSpec, any, error) // template, whole spec
	make func(cs kubernetes.Interface, ns string, tmpl corev1.PodTemplateSpec) error
	set  func(cs kubernetes.Interface, ns string, tmpl corev1.PodTemplateSpec) error
}

var historyWorkloads = []historyWorkload{
	{
		kind: catalog.KindStatefulSet,
		get: func(cs kubernetes.Interface, ns string) (corev1.PodTemplateSpec, any, error) {
			s, err := cs.AppsV1().StatefulSets(ns).Get(ctx, "checkout", metav1.GetOptions{})
			if err != nil {
				return corev1.PodTemplateSpec{}, nil, err
			}
			return s.Spec.Template, s.Spec, nil
		},
		make: func(cs kubernetes.Interface, ns string, tmpl corev1.PodTemplateSpec) error {
			_, err := cs.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{
				ObjectMeta: metav1.ObjectMeta{Name: "checkout"},
				Spec: appsv1.StatefulSetSpec{
					Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "checkout"}},
					Template: tmpl, ServiceName: "checkout",
				},
			}, metav1.CreateOptions{})
			return err
		},
		set: func(cs kubernetes.Interface, ns string, tmpl corev1.PodTemplateSpec) error {
			return retry.RetryOnConflict(retry.DefaultRetry, func() error {
				s, err := cs.AppsV1().StatefulSets(ns).Get(ctx, "checkout", metav1.GetOptions{})
				if err != nil {
					return err
				}
				s.Spec.Template = tmpl
				_, err = cs.AppsV1().StatefulSets(ns).Update(ctx, s, metav1.UpdateOptions{})
				return err
			})
		},
	},
	{
		kind: catalog.KindDaemonSet,
		get: func(cs kubernetes.Interface, ns string) (corev1.PodTemplateSpec, any, error) {
			s, err := cs.AppsV1().DaemonSets(ns).Get(ctx, "checkout", metav1.GetOptions{})
			if err != nil {
				return corev1.PodTemplateSpec{}, nil, err
			}
			return s.Spec.Template, s.Spec, nil
		},
		make: func(cs kubernetes.Interface, ns string, tmpl corev1.PodTemplateSpec) error {
			_, err := cs.AppsV1().DaemonSets(ns).Create(ctx, &appsv1.DaemonSet{
				ObjectMeta: metav1.ObjectMeta{Name: "checkout"},
				Spec: appsv1.DaemonSetSpec{
					Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "checkout"}},
					Template: tmpl,
				},
			}, metav1.CreateOptions{})
			return err
		},
		set: func(cs kubernetes.Interface, ns string, tmpl corev1.PodTemplateSpec) error {
			return retry.RetryOnConflict(retry.DefaultRetry, func() error {
				s, err := cs.AppsV1().DaemonSets(ns).Get(ctx, "checkout", metav1.GetOptions{})
				if err != nil {
					return err
				}
				s.Spec.Template = tmpl
				_, err = cs.AppsV1().DaemonSets(ns).Update(ctx, s, metav1.UpdateOptions{})
				return err
			})
		},
	},
}

// shipHistory makes the workload checkout in ns and rolls it through the
// releases, waiting for its controller to record a ControllerRevision for each.
func (w historyWorkload) ship(t *testing.T, cs kubernetes.Interface, ns string, releases ...release) {
	t.Helper()
	for i, r := range releases {
		var err error
		if i == 0 {
			err = w.make(cs, ns, r.tmpl)
		} else {
			err = w.set(cs, ns, r.tmpl)
		}
		if err != nil {
			t.Fatalf("ship %s %s: %v", w.kind, r.version, err)
		}
		waitControllerRevisions(t, cs, ns, w.kind, int64(i+1))
	}
}

// waitControllerRevisions waits until a ControllerRevision of the kind's
// checkout has revision rev.
func waitControllerRevisions(t *testing.T, cs kubernetes.Interface, ns, kind string, rev int64) {
	t.Helper()
	kube.Eventually(t, time.Minute, fmt.Sprintf("controllerrevision %d of %s in %s", rev, kind, ns), func() (bool, error) {
		crs, err := cs.AppsV1().ControllerRevisions(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=checkout"})
		if err != nil {
			return false, err
		}
		for _, cr := range crs.Items {
			if cr.Revision == rev && len(cr.OwnerReferences) == 1 && cr.OwnerReferences[0].Kind == kind {
				return true, nil
			}
		}
		return false, fmt.Errorf("%d controllerrevisions", len(crs.Items))
	})
}

// TestKubernetesRollbackHistory: a StatefulSet and a DaemonSet are rolled
// back through their ControllerRevisions exactly as `kubectl rollout undo`
// does, and not at all when they run another version than the condemned.
func TestKubernetesRollbackHistory(t *testing.T) {
	c := kube.Shared(t)
	cs := c.Client(t)
	a := actor(t, c)
	for _, w := range historyWorkloads {
		t.Run(w.kind, func(t *testing.T) {
			t.Parallel()
			vigilNS, kubectlNS, v3NS := c.Namespace(t, nil), c.Namespace(t, nil), c.Namespace(t, nil)
			w.ship(t, cs, vigilNS, ship("v1"), ship("v2"))
			w.ship(t, cs, kubectlNS, ship("v1"), ship("v2"))
			w.ship(t, cs, v3NS, ship("v1"), ship("v2"), ship("v3"))

			k := catalog.KubernetesRollback{Kind: w.kind, Namespace: vigilNS, Name: "checkout"}
			target, err := rollback(a, k, "v2")
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.ToLower(w.kind) + "/" + vigilNS + "/checkout (from v2 to revision 1, v1)"; target != want {
				t.Errorf("target = %q, want %q", target, want)
			}
			c.Kubectl(t, "", "rollout", "undo", strings.ToLower(w.kind)+"/checkout", "-n", kubectlNS)
			tmpl, byVigil, err := w.get(cs, vigilNS)
			if err != nil {
				t.Fatal(err)
			}
			if img := tmpl.Spec.Containers[0].Image; img != image("v1") {
				t.Errorf("image after rollback = %s, want v1", img)
			}
			_, byKubectl, err := w.get(cs, kubectlNS)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(byKubectl, byVigil); d != "" {
				t.Errorf("Vigil's rollback differs from kubectl rollout undo (-kubectl +vigil):\n%s", d)
			}
			// The controller takes revision 1 up again as revision 3.
			waitControllerRevisions(t, cs, vigilNS, w.kind, 3)

			_, before, _ := w.get(cs, v3NS)
			k.Namespace = v3NS
			_, err = rollback(a, k, "v2")
			if !errors.Is(err, ErrTargetChanged) || !strings.Contains(err.Error(), "runs v3") {
				t.Fatalf("rollback of v2 when v3 runs: %v, want ErrTargetChanged", err)
			}
			if _, after, _ := w.get(cs, v3NS); !cmp.Equal(before, after) {
				t.Errorf("the %s was changed: %s", w.kind, cmp.Diff(before, after))
			}
		})
	}
}

// installRolloutCRD installs the Rollout CRD written for the tests
// (testdata/argo-rollouts-crd.yaml) and waits until it is served.
func installRolloutCRD(t *testing.T, c *kube.Cluster) {
	t.Helper()
	c.Kubectl(t, "", "apply", "--server-side", "-f", "testdata/argo-rollouts-crd.yaml")
	c.Kubectl(t, "", "wait", "--for=condition=Established", "--timeout=60s", "crd/rollouts.argoproj.io")
}

// makeRollout creates Rollout checkout in ns, its template at version, and
// sets its status as Argo's controller would (no Argo controller runs here).
func makeRollout(t *testing.T, dc dynamic.Interface, ns, version string, status map[string]any) {
	t.Helper()
	ro := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
		"metadata": map[string]any{"name": "checkout", "namespace": ns},
		"spec": map[string]any{
			"replicas": int64(4),
			"selector": map[string]any{"matchLabels": map[string]any{"app": "checkout"}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]any{"app": "checkout"}},
				"spec":     map[string]any{"containers": []any{map[string]any{"name": "app", "image": image(version)}}},
			},
			"strategy": map[string]any{"canary": map[string]any{"steps": []any{map[string]any{"setWeight": int64(25)}, map[string]any{"pause": map[string]any{}}}}},
		},
	}}
	ros := dc.Resource(rolloutsResource).Namespace(ns)
	created, err := ros.Create(ctx, ro, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create rollout: %v", err)
	}
	created.Object["status"] = status
	if _, err := ros.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("set rollout status: %v", err)
	}
}

// TestArgoRolloutAbort: a Rollout whose canary runs the condemned version is
// aborted through the status subresource, as `kubectl argo rollouts abort`
// does; one that runs another version, or was aborted already, is left
// alone (refused); one fully promoted cannot be aborted (an error).
func TestArgoRolloutAbort(t *testing.T) {
	c := kube.Shared(t)
	installRolloutCRD(t, c)
	dc, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	a := KubernetesActor{Client: dc}
	canary := map[string]any{"phase": "Paused", "stableRS": "6d4f8b", "currentPodHash": "7c9e2a"}
	for _, tc := range []struct {
		name    string
		version string
		status  map[string]any
		wantErr error
		wantMsg string
	}{
		{"canary of the condemned version", "v2", canary, nil, "aborted the update to v2; stable ReplicaSet 6d4f8b"},
		{"canary of the next version", "v3", canary, ErrTargetChanged, "runs v3"},
		{"aborted already", "v2", map[string]any{"abort": true, "phase": "Degraded", "stableRS": "6d4f8b", "currentPodHash": "7c9e2a"}, ErrTargetChanged, "already aborted"},
		{"fully promoted", "v2", map[string]any{"phase": "Healthy", "stableRS": "7c9e2a", "currentPodHash": "7c9e2a"}, errAny, "fully promoted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := c.Namespace(t, nil)
			makeRollout(t, dc, ns, tc.version, tc.status)
			ros := dc.Resource(rolloutsResource).Namespace(ns)
			before, err := ros.Get(ctx, "checkout", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			target, err := rollback(a, catalog.KubernetesRollback{Kind: catalog.KindRollout, Namespace: ns, Name: "checkout"}, "v2")
			after, gerr := ros.Get(ctx, "checkout", metav1.GetOptions{})
			if gerr != nil {
				t.Fatal(gerr)
			}
			if tc.wantErr != nil {
				if err == nil || (tc.wantErr == errAny && Refused(err)) || (tc.wantErr != errAny && !errors.Is(err, tc.wantErr)) || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Fatalf("err = %v, want %v saying %q", err, tc.wantErr, tc.wantMsg)
				}
				if after.GetResourceVersion() != before.GetResourceVersion() {
					t.Error("the Rollout was written")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(target, tc.wantMsg) {
				t.Errorf("target = %q, want it to say %q", target, tc.wantMsg)
			}
			if abort, _, _ := unstructured.NestedBool(after.Object, "status", "abort"); !abort {
				t.Errorf("status.abort not set: %v", after.Object["status"])
			}
			if !cmp.Equal(before.Object["spec"], after.Object["spec"]) {
				t.Errorf("the Rollout's spec changed: %s", cmp.Diff(before.Object["spec"], after.Object["spec"]))
			}
			if after.GetGeneration() != before.GetGeneration() {
				t.Errorf("generation %d → %d: the abort went to the spec, not the status subresource", before.GetGeneration(), after.GetGeneration())
			}
		})
	}
}
