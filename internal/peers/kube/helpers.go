package kube

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	sigsyaml "sigs.k8s.io/yaml"
)

// Eventually calls f every 50 ms until it reports done, failing the test
// with what and f's last error when timeout passes first. The timeout only
// bounds a wait for the controllers; it is not a speed assertion.
func Eventually(t testing.TB, timeout time.Duration, what string, f func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		done, err := f()
		if done {
			return
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last error: %v)", what, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitRevision waits until the Deployment controller has seen the
// Deployment's latest spec and recorded its revision, and returns the
// Deployment.
func WaitRevision(t testing.TB, cs kubernetes.Interface, namespace, name string, revision int) *appsv1.Deployment {
	t.Helper()
	var d *appsv1.Deployment
	Eventually(t, time.Minute, fmt.Sprintf("deployment %s/%s at revision %d", namespace, name, revision), func() (bool, error) {
		var err error
		d, err = cs.AppsV1().Deployments(namespace).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return d.Status.ObservedGeneration >= d.Generation && d.Annotations["deployment.kubernetes.io/revision"] == fmt.Sprint(revision),
			fmt.Errorf("generation %d observed %d revision %q", d.Generation, d.Status.ObservedGeneration, d.Annotations["deployment.kubernetes.io/revision"])
	})
	return d
}

// ServiceAccountToken issues a token of a ServiceAccount through the
// TokenRequest API, as the kubelet does for a pod.
func ServiceAccountToken(t testing.TB, cs kubernetes.Interface, namespace, name string) string {
	t.Helper()
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(context.Background(), name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token of serviceaccount %s/%s: %v", namespace, name, err)
	}
	return tr.Status.Token
}

func ptr[T any](v T) *T { return &v }

// DeploymentDiff compares two Deployments field by field — name, labels,
// annotations, generation and the whole spec — ignoring what differs between
// any two objects (namespace, UID, resourceVersion, timestamps, managed
// fields) and the status. It returns "" when they agree.
func DeploymentDiff(a, b *appsv1.Deployment) string {
	norm := func(d *appsv1.Deployment) *appsv1.Deployment {
		d = d.DeepCopy()
		d.ObjectMeta = metav1.ObjectMeta{Name: d.Name, Labels: d.Labels, Annotations: d.Annotations, Generation: d.Generation}
		d.Status = appsv1.DeploymentStatus{}
		return d
	}
	return cmp.Diff(norm(a), norm(b))
}

// PodTemplate is a pod template with one container "app" running image,
// labelled with labels.
func PodTemplate(labels map[string]string, image string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
}

// Release is one version of a workload shipped: its pod template and the
// change cause the pipeline records with it (kubernetes.io/change-cause).
type Release struct {
	Cause    string
	Template corev1.PodTemplateSpec
}

// ShipDeployment creates the Deployment name in namespace, labelled and
// selecting with selector, and rolls it through the releases, waiting for
// the Deployment controller to record each revision.
func ShipDeployment(t testing.TB, cs kubernetes.Interface, namespace, name string, selector map[string]string, releases ...Release) *appsv1.Deployment {
	t.Helper()
	apps := cs.AppsV1().Deployments(namespace)
	var d *appsv1.Deployment
	for i, r := range releases {
		var err error
		if i == 0 {
			d = &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: selector},
				Spec: appsv1.DeploymentSpec{
					Selector: &metav1.LabelSelector{MatchLabels: selector},
					Template: r.Template,
				},
			}
			d.Annotations = map[string]string{"kubernetes.io/change-cause": r.Cause}
			_, err = apps.Create(context.Background(), d, metav1.CreateOptions{})
		} else {
			// The controllers write the Deployment too: read, change, write
			// until the write is not a conflict.
			err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
				cur, err := apps.Get(context.Background(), name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				cur.Spec.Template = r.Template
				if cur.Annotations == nil {
					cur.Annotations = map[string]string{}
				}
				cur.Annotations["kubernetes.io/change-cause"] = r.Cause
				_, err = apps.Update(context.Background(), cur, metav1.UpdateOptions{})
				return err
			})
		}
		if err != nil {
			t.Fatalf("ship %s/%s (%s): %v", namespace, name, r.Cause, err)
		}
		d = WaitRevision(t, cs, namespace, name, i+1)
	}
	return d
}

// ApplyFiles applies the YAML documents of files with kubectl, server-side,
// moving objects between namespaces as namespaces maps them: an object (or
// a RoleBinding's subject) in namespace k goes to namespaces[k]; an object
// without a namespace goes to namespaces[""] when that is set.
func (c *Cluster) ApplyFiles(t testing.TB, namespaces map[string]string, files ...string) {
	t.Helper()
	var out bytes.Buffer
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if obj == nil {
				continue
			}
			u := unstructured.Unstructured{Object: obj}
			if to, ok := namespaces[u.GetNamespace()]; ok {
				u.SetNamespace(to)
			}
			if subjects, ok, _ := unstructured.NestedSlice(obj, "subjects"); ok {
				for _, s := range subjects {
					if m, ok := s.(map[string]any); ok {
						if to, ok := namespaces[fmt.Sprint(m["namespace"])]; ok {
							m["namespace"] = to
						}
					}
				}
				_ = unstructured.SetNestedSlice(obj, subjects, "subjects")
			}
			y, err := sigsyaml.Marshal(obj)
			if err != nil {
				t.Fatal(err)
			}
			out.WriteString("---\n")
			out.Write(y)
		}
	}
	c.Kubectl(t, out.String(), "apply", "--server-side", "-f", "-")
}

// WriteKubeconfig writes a kubeconfig for this API server that
// authenticates with token into dir and returns its path.
func (c *Cluster) WriteKubeconfig(t testing.TB, dir, token string) string {
	t.Helper()
	p := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(p, kubeconfig(c.Host, c.CAFile, token), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
