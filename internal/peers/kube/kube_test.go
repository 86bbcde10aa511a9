package kube

import (
	"context"
	"os"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

func TestMain(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}

// TestControlPlane: the control plane serves the version built, rolls a
// Deployment out through ReplicaSets with revisions, authenticates only the
// administrator's token, and kubectl talks to it.
func TestControlPlane(t *testing.T) {
	c := Shared(t)
	t.Logf("etcd + kube-apiserver + kube-controller-manager ready in %s", c.StartedIn)
	cs := c.Client(t)
	info, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if info.GitVersion != Version {
		t.Errorf("server version %s, want %s", info.GitVersion, Version)
	}
	if out := c.Kubectl(t, "", "version", "--client"); !strings.Contains(out, "Client Version: "+Version) {
		t.Errorf("kubectl version: %s", out)
	}

	ns := c.Namespace(t, nil)
	ctx := context.Background()
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: PodTemplate(labels, "example.com/web:v1"),
		},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	WaitRevision(t, cs, ns, "web", 1)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		d.Spec.Template.Spec.Containers[0].Image = "example.com/web:v2"
		_, err = cs.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	WaitRevision(t, cs, ns, "web", 2)
	rss, err := cs.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rs := range rss.Items {
		got = append(got, rs.Annotations["deployment.kubernetes.io/revision"]+"="+rs.Spec.Template.Spec.Containers[0].Image)
	}
	sort.Strings(got)
	if strings.Join(got, " ") != "1=example.com/web:v1 2=example.com/web:v2" {
		t.Errorf("replicasets (revision=image): %v", got)
	}

	// Another token is not the administrator.
	anon, err := kubernetes.NewForConfig(c.TokenConfig("not-a-token"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := anon.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{}); !apierrors.IsUnauthorized(err) {
		t.Errorf("get with a wrong token: %v, want 401 Unauthorized", err)
	}
}
