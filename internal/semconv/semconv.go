// Package semconv names the series Vigil derives from telemetry and the
// labels that tie them to a deployment. The hot path writes them; the rule
// and dashboard generators and the verdict engine query them. Changing a
// name here changes Vigil's public contract: update docs/ingest.md with it.
package semconv

import "strings"

// Labels shared by every derived series. They come from OTLP resource
// attributes (service.name, service.namespace, deployment.environment.name,
// service.version) or from the labels of the same names on Prometheus
// samples and Loki streams.
const (
	LabelService     = "service"
	LabelNamespace   = "namespace"
	LabelEnvironment = "environment"
	LabelVersion     = "version"
)

// Span metrics: request rate, errors and duration (RED) per service,
// operation and version, derived from every span, in the manner of the
// OpenTelemetry Collector's spanmetrics connector (with seconds as the unit).
const (
	// SpanCalls counts spans. Labels: service, namespace, environment,
	// version, span_name, span_kind, status_code.
	SpanCalls = "traces_span_metrics_calls_total"
	// SpanDuration is the span duration histogram, in seconds: a native
	// histogram under this name and, when classic buckets are configured,
	// SpanDuration+"_bucket"/"_sum"/"_count". Same labels as SpanCalls.
	SpanDuration = "traces_span_metrics_duration_seconds"

	LabelSpanName   = "span_name"
	LabelSpanKind   = "span_kind"   // SPAN_KIND_SERVER, SPAN_KIND_CLIENT, ...
	LabelStatusCode = "status_code" // STATUS_CODE_UNSET, STATUS_CODE_OK, STATUS_CODE_ERROR

	StatusError = "STATUS_CODE_ERROR"
	KindServer  = "SPAN_KIND_SERVER"
	KindClient  = "SPAN_KIND_CLIENT"
)

// Service graph: requests between services, counted when both the client
// and the server span of a call are seen.
const (
	// ServiceGraphRequests counts calls. Labels: client, server, and the
	// client's version as client_version and the server's as server_version.
	ServiceGraphRequests = "traces_service_graph_request_total"
	// ServiceGraphFailed counts calls where either side has an error status.
	ServiceGraphFailed = "traces_service_graph_request_failed_total"

	LabelClient        = "client"
	LabelServer        = "server"
	LabelClientVersion = "client_version"
	LabelServerVersion = "server_version"
)

// Log metrics.
const (
	// LogRecords counts log records. Labels: service, namespace,
	// environment, version, severity, and the labels of the configured
	// log_metrics.dimensions.
	LogRecords = "log_records_total"
	// LabelSeverity is one of trace, debug, info, warn, error, fatal, unknown.
	LabelSeverity = "severity"
)

// SpanMetricLabels are the labels every span metric series may carry,
// besides those of the configured span_metrics.dimensions.
var SpanMetricLabels = []string{LabelService, LabelNamespace, LabelEnvironment, LabelVersion, LabelSpanName, LabelSpanKind, LabelStatusCode}

// LogRecordLabels are the labels a LogRecords series may carry, besides
// those of the configured log_metrics.dimensions.
var LogRecordLabels = []string{LabelService, LabelNamespace, LabelEnvironment, LabelVersion, LabelSeverity}

// DimensionLabel is the label name of a dimension (an attribute name such
// as http.route or k8s.cluster.name): dots, dashes and slashes become
// underscores.
func DimensionLabel(attr string) string {
	return strings.Map(func(r rune) rune {
		if r == '.' || r == '-' || r == '/' {
			return '_'
		}
		return r
	}, attr)
}

// Severity values of LabelSeverity.
const (
	SeverityTrace   = "trace"
	SeverityDebug   = "debug"
	SeverityInfo    = "info"
	SeverityWarn    = "warn"
	SeverityError   = "error"
	SeverityFatal   = "fatal"
	SeverityUnknown = "unknown"
)

// Deployment series written by the deploy package.
const (
	// DeploymentInfo is 1 for each service/environment's current deployment.
	// Labels: service, namespace, environment, version, previous_version,
	// strategy, pipeline, commit.
	DeploymentInfo = "vigil_deployment_info"
	// VerdictInfo is the score (0..1) of the latest verdict per service and
	// version. Labels: service, environment, version, baseline, decision
	// (promote, rollback, inconclusive).
	VerdictInfo = "vigil_verdict_info"

	LabelPreviousVersion = "previous_version"
	LabelStrategy        = "strategy"
	LabelPipeline        = "pipeline"
	LabelCommit          = "commit"
	LabelBaseline        = "baseline"
	LabelDecision        = "decision"
)
