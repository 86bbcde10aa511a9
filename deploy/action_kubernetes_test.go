package deploy

import (
	"context"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/fake"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/deploy/verdict"
)

// These tests use client-go's fake (dynamic) clientset: no Kubernetes API
// server can run on this machine. The fake stores objects like the API server does but
// runs no controllers, so the tests check what Vigil writes to the
// Deployment, not the rollout that would follow.

func template(image string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "checkout"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
}

func history(t *testing.T, dep *appsv1.Deployment, revs map[int]string) []runtime.Object {
	out := []runtime.Object{toUnstructured(t, dep, "Deployment")}
	for rev, image := range revs {
		tmpl := template(image)
		tmpl.Labels = map[string]string{"app": "checkout", podTemplateHashLabel: "h" + image[len(image)-2:]}
		out = append(out, toUnstructured(t, &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{
				Name: "checkout-" + image[len(image)-2:], Namespace: "shop", Labels: tmpl.Labels,
				Annotations:     map[string]string{revisionAnnotation: itoa(rev), changeCauseAnnotation: "deploy " + image},
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(dep, appsv1.SchemeGroupVersion.WithKind("Deployment"))},
			},
			Spec: appsv1.ReplicaSetSpec{Selector: dep.Spec.Selector, Template: tmpl},
		}, "ReplicaSet"))
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }

func toUnstructured(t *testing.T, obj runtime.Object, kind string) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion("apps/v1")
	u.SetKind(kind)
	return u
}

func TestKubernetesRollback(t *testing.T) {
	tests := []struct {
		name      string
		current   int
		revs      map[int]string
		paused    bool
		wantImage string
		wantErr   string
	}{
		{"back to the previous revision", 3, map[int]string{1: "shop/checkout:v1", 2: "shop/checkout:v2", 3: "shop/checkout:v3"}, false, "shop/checkout:v2", ""},
		{"gaps in history", 5, map[int]string{2: "shop/checkout:v2", 5: "shop/checkout:v5"}, false, "shop/checkout:v2", ""},
		{"no previous revision", 1, map[int]string{1: "shop/checkout:v1"}, false, "", "no previous revision"},
		{"paused deployment", 2, map[int]string{1: "shop/checkout:v1", 2: "shop/checkout:v2"}, true, "", "paused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dep := &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: "checkout", Namespace: "shop", UID: "uid-1", Annotations: map[string]string{revisionAnnotation: itoa(tc.current)}},
				Spec: appsv1.DeploymentSpec{
					Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "checkout"}},
					Template: template(tc.revs[tc.current]),
					Paused:   tc.paused,
				},
			}
			client := fake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
				deploymentsResource: "DeploymentList", replicaSetsResource: "ReplicaSetList",
			}, history(t, dep, tc.revs)...)
			a := KubernetesActor{Client: client}
			svc := catalog.Service{Name: "checkout", Rollback: catalog.Rollback{Kubernetes: &catalog.KubernetesRollback{Namespace: "shop", Deployment: "checkout"}}}
			if !a.Applies(svc) {
				t.Fatal("actor does not apply to a service with rollback.kubernetes")
			}
			target, err := a.Rollback(context.Background(), svc, Deployment{}, verdict.Verdict{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(target, "deployment/shop/checkout") {
				t.Errorf("target = %q", target)
			}
			u, err := client.Resource(deploymentsResource).Namespace("shop").Get(context.Background(), "checkout", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var got appsv1.Deployment
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &got); err != nil {
				t.Fatal(err)
			}
			if img := got.Spec.Template.Spec.Containers[0].Image; img != tc.wantImage {
				t.Errorf("image after rollback = %s, want %s", img, tc.wantImage)
			}
			if _, ok := got.Spec.Template.Labels[podTemplateHashLabel]; ok {
				t.Error("pod-template-hash label copied into the Deployment template")
			}
			if got.Annotations[changeCauseAnnotation] != "deploy "+tc.wantImage {
				t.Errorf("change-cause = %q", got.Annotations[changeCauseAnnotation])
			}
		})
	}
}
