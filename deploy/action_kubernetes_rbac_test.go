package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/internal/peers/kube"
)

const (
	rbacExample        = "kubernetes/examples/rollback-rbac.yaml"
	baseServiceAccount = "kubernetes/base/serviceaccount.yaml"
)

// grant is one verb on one resource of the example Role, and the kind of
// rollback that needs it.
type grant struct {
	rule     int
	group    string
	resource string // with its subresource: rollouts/status
	verb     string
	kind     string
}

func (g grant) String() string { return g.verb + " " + g.resource }

func kindNeeding(resource string) string {
	switch resource {
	case "deployments", "replicasets":
		return catalog.KindDeployment
	case "statefulsets", "controllerrevisions":
		return catalog.KindStatefulSet
	case "daemonsets":
		return catalog.KindDaemonSet
	default:
		return catalog.KindRollout
	}
}

// TestRollbackRBACExample: Vigil, configured as in a pod (the service
// account's token and CA in a directory, the API server's address in
// KUBERNETES_SERVICE_HOST/PORT), with a token of the base's ServiceAccount
// bound to deploy/kubernetes/examples/rollback-rbac.yaml's Role and nothing
// else:
//   - every grant of the Role is needed: without it the rollback of the kind
//     that uses it is forbidden, naming that verb and resource;
//   - with the Role, the rollback of each kind works;
//   - the same token can touch no other namespace and do no other verb.
func TestRollbackRBACExample(t *testing.T) {
	c := kube.Shared(t)
	cs := c.Client(t)
	installRolloutCRD(t, c)
	dc, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	appNS, vigilNS, otherNS := c.Namespace(t, nil), c.Namespace(t, nil), c.Namespace(t, nil)
	c.ApplyFiles(t, map[string]string{"shop": appNS, "vigil": vigilNS, "": vigilNS}, baseServiceAccount, rbacExample)

	shipDeployment(t, cs, appNS, ship("v1"), ship("v2"))
	shipDeployment(t, cs, otherNS, ship("v1"), ship("v2"))
	for _, w := range historyWorkloads {
		w.ship(t, cs, appNS, ship("v1"), ship("v2"))
	}
	makeRollout(t, dc, appNS, "v2", map[string]any{"phase": "Paused", "stableRS": "6d4f8b", "currentPodHash": "7c9e2a"})

	// Vigil as in a pod.
	token := kube.ServiceAccountToken(t, cs, vigilNS, "vigil")
	saDir := t.TempDir()
	for name, data := range map[string][]byte{"token": []byte(token), "ca.crt": c.CA, "namespace": []byte(vigilNS)} {
		if err := os.WriteFile(filepath.Join(saDir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	host, port, _ := strings.Cut(strings.TrimPrefix(c.Host, "https://"), ":")
	t.Setenv("KUBERNETES_SERVICE_HOST", host)
	t.Setenv("KUBERNETES_SERVICE_PORT", port)
	a, err := NewKubernetesActor(KubernetesConfig{Enabled: true, ServiceAccountDir: saDir})
	if err != nil {
		t.Fatal(err)
	}
	saClient, err := kubernetes.NewForConfig(c.TokenConfig(token))
	if err != nil {
		t.Fatal(err)
	}
	saDynamic, err := dynamic.NewForConfig(c.TokenConfig(token))
	if err != nil {
		t.Fatal(err)
	}

	role, err := cs.RbacV1().Roles(appNS).Get(ctx, "vigil-rollback", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var grants []grant
	for i, r := range role.Rules {
		for _, res := range r.Resources {
			for _, v := range r.Verbs {
				grants = append(grants, grant{rule: i, group: r.APIGroups[0], resource: res, verb: v, kind: kindNeeding(res)})
			}
		}
	}
	// allowed asks the API server whether the token may do g.
	allowed := func(g grant) (bool, error) {
		res, sub, _ := strings.Cut(g.resource, "/")
		r, err := saClient.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: appNS, Group: g.group, Resource: res, Subresource: sub, Verb: g.verb,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		return r.Status.Allowed, nil
	}
	// setRole replaces the Role's rules and waits until the authorizer sees
	// exactly the grants of rules allowed.
	setRole := func(rules []rbacv1.PolicyRule, without *grant) {
		t.Helper()
		r, err := cs.RbacV1().Roles(appNS).Get(ctx, "vigil-rollback", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r.Rules = rules
		if _, err := cs.RbacV1().Roles(appNS).Update(ctx, r, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		kube.Eventually(t, 30*time.Second, "the authorizer sees the Role", func() (bool, error) {
			for _, g := range grants {
				ok, err := allowed(g)
				if err != nil {
					return false, err
				}
				if want := without == nil || g.rule != without.rule || g.verb != without.verb; ok != want {
					return false, fmt.Errorf("%s allowed=%v", g, ok)
				}
			}
			return true, nil
		})
	}
	full := role.Rules

	t.Run("every grant is needed", func(t *testing.T) {
		for _, g := range grants {
			var rules []rbacv1.PolicyRule
			for i, r := range full {
				r = *r.DeepCopy()
				if i == g.rule {
					r.Verbs = slices.DeleteFunc(r.Verbs, func(v string) bool { return v == g.verb })
					if len(r.Verbs) == 0 {
						continue
					}
				}
				rules = append(rules, r)
			}
			setRole(rules, &g)
			_, err := rollback(a, catalog.KubernetesRollback{Kind: g.kind, Namespace: appNS, Name: "checkout"}, "v2")
			want := fmt.Sprintf("cannot %s resource %q", g.verb, g.resource)
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), want) {
				t.Errorf("%s rollback without %q: %v; want 403 Forbidden saying %q", g.kind, g, err, want)
			}
		}
		setRole(full, nil)
	})

	t.Run("rollback of each kind", func(t *testing.T) {
		for _, kind := range []string{catalog.KindDeployment, catalog.KindStatefulSet, catalog.KindDaemonSet, catalog.KindRollout} {
			if _, err := rollback(a, catalog.KubernetesRollback{Kind: kind, Namespace: appNS, Name: "checkout"}, "v2"); err != nil {
				t.Errorf("%s: %v", kind, err)
			}
		}
		d, err := cs.AppsV1().Deployments(appNS).Get(ctx, "checkout", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if img := d.Spec.Template.Spec.Containers[0].Image; img != image("v1") {
			t.Errorf("deployment image %s after the rollback, want v1", img)
		}
	})

	t.Run("nothing else", func(t *testing.T) {
		deps := saClient.AppsV1().Deployments(appNS)
		for _, tc := range []struct {
			what string
			do   func() error
		}{
			{"roll back a Deployment in another namespace", func() error {
				_, err := rollback(a, catalog.KubernetesRollback{Kind: catalog.KindDeployment, Namespace: otherNS, Name: "checkout"}, "v2")
				return err
			}},
			{"get a Deployment in another namespace", func() error {
				_, err := saClient.AppsV1().Deployments(otherNS).Get(ctx, "checkout", metav1.GetOptions{})
				return err
			}},
			{"get a Deployment in Vigil's own namespace", func() error {
				_, err := saClient.AppsV1().Deployments(vigilNS).Get(ctx, "checkout", metav1.GetOptions{})
				return err
			}},
			{"list Deployments", func() error { _, err := deps.List(ctx, metav1.ListOptions{}); return err }},
			{"update (PUT) a Deployment", func() error {
				d, err := cs.AppsV1().Deployments(appNS).Get(ctx, "checkout", metav1.GetOptions{})
				if err != nil {
					return err
				}
				_, err = deps.Update(ctx, d, metav1.UpdateOptions{})
				return err
			}},
			{"delete a Deployment", func() error { return deps.Delete(ctx, "checkout", metav1.DeleteOptions{}) }},
			{"create a Deployment", func() error {
				d, err := cs.AppsV1().Deployments(appNS).Get(ctx, "checkout", metav1.GetOptions{})
				if err != nil {
					return err
				}
				d = &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Spec: d.Spec}
				_, err = deps.Create(ctx, d, metav1.CreateOptions{})
				return err
			}},
			{"scale a Deployment", func() error {
				_, err := deps.Patch(ctx, "checkout", types.MergePatchType, []byte(`{"spec":{"replicas":3}}`), metav1.PatchOptions{}, "scale")
				return err
			}},
			{"patch a ReplicaSet", func() error {
				rss, err := cs.AppsV1().ReplicaSets(appNS).List(ctx, metav1.ListOptions{})
				if err != nil || len(rss.Items) == 0 {
					return fmt.Errorf("no replicasets: %v", err)
				}
				_, err = saClient.AppsV1().ReplicaSets(appNS).Patch(ctx, rss.Items[0].Name, types.MergePatchType, []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{})
				return err
			}},
			{"patch a Rollout's spec", func() error {
				_, err := saDynamic.Resource(rolloutsResource).Namespace(appNS).Patch(ctx, "checkout", types.MergePatchType, []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{})
				return err
			}},
			{"read a Secret", func() error {
				_, err := saClient.CoreV1().Secrets(appNS).List(ctx, metav1.ListOptions{})
				return err
			}},
			{"list Pods", func() error { _, err := saClient.CoreV1().Pods(appNS).List(ctx, metav1.ListOptions{}); return err }},
			{"exec into a Pod", func() error {
				return saClient.CoreV1().RESTClient().Post().Namespace(appNS).Resource("pods").Name("checkout-0").SubResource("exec").
					Param("command", "true").Param("stdout", "true").Do(ctx).Error()
			}},
			{"edit its own Role", func() error {
				_, err := saClient.RbacV1().Roles(appNS).Patch(ctx, "vigil-rollback", types.MergePatchType, []byte(`{"rules":[]}`), metav1.PatchOptions{})
				return err
			}},
		} {
			if err := tc.do(); !apierrors.IsForbidden(err) {
				t.Errorf("%s: %v, want 403 Forbidden", tc.what, err)
			}
		}
	})
}

// TestInClusterConfig: outside a pod, or without a mounted token, Vigil
// says what is missing; kubeconfig and service_account_dir exclude each other.
func TestInClusterConfig(t *testing.T) {
	full := t.TempDir()
	for _, f := range []string{"token", "ca.crt"} {
		if err := os.WriteFile(filepath.Join(full, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name       string
		host, port string
		cfg        KubernetesConfig
		want       string
	}{
		{"not in a pod", "", "", KubernetesConfig{Enabled: true, ServiceAccountDir: full}, "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset"},
		{"no token mounted", "127.0.0.1", "6443", KubernetesConfig{Enabled: true, ServiceAccountDir: t.TempDir()}, "is a token mounted?"},
		{"both", "127.0.0.1", "6443", KubernetesConfig{Enabled: true, ServiceAccountDir: full, Kubeconfig: "/k"}, "kubeconfig and service_account_dir: set one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KUBERNETES_SERVICE_HOST", tc.host)
			t.Setenv("KUBERNETES_SERVICE_PORT", tc.port)
			_, err := NewKubernetesActor(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "deploy.kubernetes") {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}
