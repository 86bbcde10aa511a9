package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/deploy/verdict"
)

// DryRun implements DryRunner: it reads the workload (a GET, which the
// rollback's RBAC already allows) and runs the rollback's safety check on
// it — does it still run the condemned version? — changing nothing.
func (a KubernetesActor) DryRun(ctx context.Context, svc catalog.Service, d Deployment, v verdict.Verdict) (string, error) {
	k := svc.Rollback.Kubernetes
	kind := first(k.Kind, catalog.KindDeployment)
	name := first(k.Name, k.Deployment, svc.Name)
	target := strings.ToLower(kind) + "/" + k.Namespace + "/" + name
	if a.Client == nil {
		return target, errors.New("no Kubernetes client configured (deploy.kubernetes)")
	}
	condemned := first(v.Version, d.Version)
	if condemned == "" {
		return target, fmt.Errorf("%s: the verdict names no version: %w", target, ErrVersionUnknown)
	}
	var res schema.GroupVersionResource
	switch kind {
	case catalog.KindDeployment:
		res = deploymentsResource
	case catalog.KindStatefulSet:
		res = statefulSetsResource
	case catalog.KindDaemonSet:
		res = daemonSetsResource
	case catalog.KindRollout:
		res = rolloutsResource
	default:
		return target, fmt.Errorf("rollback.kubernetes.kind %q is not supported", kind)
	}
	obj, err := a.Client.Resource(res).Namespace(k.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return target, fmt.Errorf("get %s: %w", target, err)
	}
	tmpl, err := podTemplate(obj)
	if err != nil {
		return target, err
	}
	return target, checkRunning(target, tmpl, k.Container, svc.Name, condemned)
}
