package kubernetes_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/vigilhq/vigil/internal/peers/kube"
)

func TestMain(m *testing.M) {
	code := m.Run()
	kube.StopShared()
	os.Exit(code)
}

var ctx = context.Background()

// warnings collects the warnings the API server sends (deprecated APIs,
// PodSecurity violations of workloads, unknown fields under Warn).
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.msgs
	w.msgs = nil
	return m
}

// apiClients are the clients of one test, all reporting their warnings.
type apiClients struct {
	dyn    dynamic.Interface
	cs     kubernetes.Interface
	mapper meta.RESTMapper
	warns  *warnings
}

func newClients(t *testing.T, c *kube.Cluster) apiClients {
	t.Helper()
	w := &warnings{}
	rc := c.RESTConfig()
	rc.WarningHandler = w
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return apiClients{dyn: dyn, cs: cs, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)), warns: w}
}

// renderObjects builds a kustomization directory with kustomize's Go API.
func renderObjects(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	opts := krusty.MakeDefaultOptions()
	opts.Reorder = krusty.ReorderOptionUnspecified // the overlays set sortOptions themselves
	m, err := krusty.MakeKustomizer(opts).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var out []*unstructured.Unstructured
	for _, res := range m.Resources() {
		obj, err := res.Map()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &unstructured.Unstructured{Object: obj})
	}
	return out
}

// applyStrict applies obj server-side as `kubectl apply --server-side
// --validate=strict` does: a field the API does not know is an error.
func (a apiClients) applyStrict(obj *unstructured.Unstructured, dryRun bool) (*unstructured.Unstructured, error) {
	gvk := obj.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", gvk, err)
	}
	var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = a.dyn.Resource(m.Resource).Namespace(obj.GetNamespace())
	}
	body, err := json.Marshal(obj.Object)
	if err != nil {
		return nil, err
	}
	opts := metav1.PatchOptions{FieldManager: "vigil-manifests-test", Force: ptr(true), FieldValidation: metav1.FieldValidationStrict}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, body, opts)
}

func ptr[T any](v T) *T { return &v }

// TestManifestsOnAPIServer applies the base and each overlay to a real
// kube-apiserver, server-side with strict field validation, into their own
// namespace (the manifests' Namespace, renamed), and checks what the API
// server and its admission say: every object accepted without a warning, the
// namespace enforcing the restricted Pod Security Standard, each pod
// template admitted as a Pod by PodSecurity (dry run), the controllers' own
// pods admitted, the HorizontalPodAutoscaler accepted as written.
func TestManifestsOnAPIServer(t *testing.T) {
	c := kube.Shared(t)
	for _, dir := range []string{"base", overlayDir("single-node"), overlayDir("scaled")} {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			a := newClients(t, c)
			objs := renderObjects(t, dir)
			ns := "vigil-" + strings.ReplaceAll(strings.TrimPrefix(dir, "overlays/"), "-", "") + "-" + rand.String(5)
			t.Cleanup(func() { _ = a.cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
			var workloads, hpas []*unstructured.Unstructured
			for _, o := range objs {
				if o.GetKind() == "Namespace" {
					o.SetName(ns)
				} else {
					o.SetNamespace(ns)
				}
				applied, err := a.applyStrict(o, false)
				if err != nil {
					t.Fatalf("apply %s %s: %v", o.GetKind(), o.GetName(), err)
				}
				if w := a.warns.take(); len(w) > 0 {
					t.Errorf("apply %s %s: the API server warned: %q", o.GetKind(), o.GetName(), w)
				}
				switch o.GetKind() {
				case "StatefulSet", "Deployment":
					workloads = append(workloads, applied)
				case "HorizontalPodAutoscaler":
					hpas = append(hpas, o)
				}
			}
			if len(workloads) == 0 {
				t.Fatal("no workloads rendered")
			}

			nsObj, err := a.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := nsObj.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
				t.Errorf("namespace enforces Pod Security %q, want restricted", got)
			}

			for _, w := range workloads {
				pod := podOf(t, w)
				if _, err := a.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: metav1.FieldValidationStrict}); err != nil {
					t.Errorf("%s %s: its pod is refused: %v", w.GetKind(), w.GetName(), err)
				}
				if warn := a.warns.take(); len(warn) > 0 {
					t.Errorf("%s %s: its pod draws warnings: %q", w.GetKind(), w.GetName(), warn)
				}
				// The controllers make the real pods, through the same admission.
				sel := labelsOf(pod.Labels)
				kube.Eventually(t, time.Minute, fmt.Sprintf("a pod of %s %s", w.GetKind(), w.GetName()), func() (bool, error) {
					pods, err := a.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
					if err != nil {
						return false, err
					}
					return len(pods.Items) > 0, fmt.Errorf("no pod with %s yet", sel)
				})
			}

			for _, h := range hpas {
				var want autoscalingv2.HorizontalPodAutoscaler
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(jsonRoundTrip(t, h.Object), &want); err != nil {
					t.Fatal(err)
				}
				got, err := a.cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, h.GetName(), metav1.GetOptions{})
				if err != nil {
					t.Fatalf("HPA %s: %v", h.GetName(), err)
				}
				if d := cmp.Diff(want.Spec.Metrics, got.Spec.Metrics); d != "" {
					t.Errorf("HPA %s: metrics stored differ from those written (-written +stored):\n%s", h.GetName(), d)
				}
				if got.Spec.ScaleTargetRef != want.Spec.ScaleTargetRef || *got.Spec.MinReplicas != *want.Spec.MinReplicas || got.Spec.MaxReplicas != want.Spec.MaxReplicas {
					t.Errorf("HPA %s: stored %+v, written %+v", h.GetName(), got.Spec, want.Spec)
				}
			}
		})
	}
}

// jsonRoundTrip turns kustomize's map (ints) into what JSON decoding gives (int64, float64).
func jsonRoundTrip(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out unstructured.Unstructured
	if err := out.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	return out.Object
}

// podOf is the Pod a workload's controller would make from its template (as
// the API server stored it, defaults included), with the volumes of a
// StatefulSet's claim templates, named like the first pod.
func podOf(t *testing.T, w *unstructured.Unstructured) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{}
	switch w.GetKind() {
	case "StatefulSet":
		var s appsv1.StatefulSet
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(w.Object, &s); err != nil {
			t.Fatal(err)
		}
		pod.ObjectMeta, pod.Spec = *s.Spec.Template.ObjectMeta.DeepCopy(), *s.Spec.Template.Spec.DeepCopy()
		pod.Name = s.Name + "-dry-run-0"
		for _, vct := range s.Spec.VolumeClaimTemplates {
			pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: vct.Name, VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: vct.Name + "-" + s.Name + "-0"},
			}})
		}
	case "Deployment":
		var d appsv1.Deployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(w.Object, &d); err != nil {
			t.Fatal(err)
		}
		pod.ObjectMeta, pod.Spec = *d.Spec.Template.ObjectMeta.DeepCopy(), *d.Spec.Template.Spec.DeepCopy()
		pod.Name = d.Name + "-dry-run"
	}
	pod.Namespace = w.GetNamespace()
	return pod
}

func labelsOf(m map[string]string) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

// TestAPIServerRefuses shows that the checks of TestManifestsOnAPIServer
// can fail: the real API server refuses an unknown field under strict
// validation, and PodSecurity refuses, even in a dry run, a pod without a
// security context in a restricted namespace.
func TestAPIServerRefuses(t *testing.T) {
	c := kube.Shared(t)
	a := newClients(t, c)
	ns := c.Namespace(t, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	svc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": "typo", "namespace": ns},
		"spec":     map[string]any{"portz": []any{map[string]any{"port": int64(80)}}},
	}}
	if _, err := a.applyStrict(svc, true); err == nil || !strings.Contains(err.Error(), ".spec.portz: field not declared in schema") {
		t.Errorf("apply with a misspelt field: %v, want an error naming .spec.portz", err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "privileged", Namespace: ns},
		// No security context: root allowed, privilege escalation allowed,
		// all capabilities, no seccomp profile.
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "ghcr.io/vigilhq/vigil:0.1.0"}}},
	}
	_, err := a.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `violates PodSecurity "restricted:latest"`) {
		t.Errorf("a pod without a security context in a restricted namespace: %v, want 403 from PodSecurity", err)
	}
}

// rest is imported for the WarningHandler interface the warnings type implements.
var _ rest.WarningHandler = (*warnings)(nil)
