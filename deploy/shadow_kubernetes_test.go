package deploy

import (
	"errors"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/peers/kube"
)

// TestKubernetesDryRun: against a real API server, the dry run a shadow
// rollback records says what the rollback would act on and whether its
// safety check would refuse, and changes nothing.
func TestKubernetesDryRun(t *testing.T) {
	c := kube.Shared(t)
	cs := c.Client(t)
	a := actor(t, c)
	ns := c.Namespace(t, nil)
	before := shipDeployment(t, cs, ns, ship("v1"), ship("v2"))
	svc := catalog.Service{Name: "checkout", Namespace: ns, Rollback: catalog.Rollback{Kubernetes: &catalog.KubernetesRollback{Kind: catalog.KindDeployment, Namespace: ns, Name: "checkout"}}}
	for _, tc := range []struct {
		condemned string
		refused   bool
	}{{"v2", false}, {"v1", true}} {
		v := verdict.Verdict{Service: "checkout", Version: tc.condemned}
		target, err := a.DryRun(ctx, svc, Deployment{Service: "checkout", Version: tc.condemned}, v)
		if target != "deployment/"+ns+"/checkout" || Refused(err) != tc.refused || (err != nil && !errors.Is(err, ErrTargetChanged)) {
			t.Errorf("dry run condemning %s: %s, %v (refused want %v)", tc.condemned, target, err, tc.refused)
		}
	}
	after, err := cs.AppsV1().Deployments(ns).Get(ctx, "checkout", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.Generation != before.Generation || after.Spec.Template.Spec.Containers[0].Image != image("v2") {
		t.Errorf("the dry run changed the Deployment: generation %d → %d", before.Generation, after.Generation)
	}
}
