package collector

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
)

// Identity ties a signal to the deployment that produced it: the service,
// where it runs and which version of it.
type Identity struct {
	Service     string
	Namespace   string
	Environment string
	Version     string
}

// Resource attributes Identity is read from (OpenTelemetry semantic conventions).
const (
	AttrServiceName        = "service.name"
	AttrServiceNamespace   = "service.namespace"
	AttrServiceVersion     = "service.version"
	AttrDeploymentEnv      = "deployment.environment.name"
	AttrDeploymentEnvOld   = "deployment.environment" // the name before semantic conventions 1.27
	AttrK8sNamespace       = "k8s.namespace.name"
	AttrServiceInstanceID  = "service.instance.id"
	unknownServiceFallback = "unknown_service"
)

// IdentityFromResource reads the identity from OTLP resource attributes.
// The namespace is service.namespace, or the Kubernetes namespace when the
// service has none. A resource without service.name is "unknown_service",
// as the OpenTelemetry SDKs name it.
func IdentityFromResource(res pcommon.Resource) Identity {
	attrs := res.Attributes()
	get := func(keys ...string) string {
		for _, k := range keys {
			if v, ok := attrs.Get(k); ok {
				if s := ValueString(v); s != "" {
					return s
				}
			}
		}
		return ""
	}
	id := Identity{
		Service:     get(AttrServiceName),
		Namespace:   get(AttrServiceNamespace, AttrK8sNamespace),
		Environment: get(AttrDeploymentEnv, AttrDeploymentEnvOld),
		Version:     get(AttrServiceVersion),
	}
	if id.Service == "" {
		id.Service = unknownServiceFallback
	}
	return id
}

// IdentityFromLabels reads the identity from Prometheus or Loki labels:
// service (or service_name, app, job), namespace, environment (or env),
// version (or service_version).
func IdentityFromLabels(get func(name string) string) Identity {
	first := func(names ...string) string {
		for _, n := range names {
			if v := get(n); v != "" {
				return v
			}
		}
		return ""
	}
	id := Identity{
		Service:     first("service", "service_name", "app", "app_kubernetes_io_name", "job"),
		Namespace:   first("namespace", "service_namespace", "k8s_namespace_name"),
		Environment: first("environment", "env", "deployment_environment", "deployment_environment_name"),
		Version:     first("version", "service_version", "app_kubernetes_io_version"),
	}
	if id.Service == "" {
		id.Service = unknownServiceFallback
	}
	return id
}
