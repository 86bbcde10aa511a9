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
	// LabelCollector names the collector replica that derived a series
	// (collector.replica). It is set only when Vigil runs as several
	// collector replicas; everything that reads derived series aggregates
	// it away (sum, sum by), so one node and N replicas give the same
	// numbers.
	LabelCollector = "collector"
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
var SpanMetricLabels = []string{LabelService, LabelNamespace, LabelEnvironment, LabelVersion, LabelSpanName, LabelSpanKind, LabelStatusCode, LabelCollector}

// LogRecordLabels are the labels a LogRecords series may carry, besides
// those of the configured log_metrics.dimensions.
var LogRecordLabels = []string{LabelService, LabelNamespace, LabelEnvironment, LabelVersion, LabelSeverity, LabelCollector}

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
	// DeploymentStarted is the current deployment's start, in Unix
	// seconds. Labels: service, namespace, environment, version.
	DeploymentStarted = "vigil_deployment_started_timestamp_seconds"
	// VerdictInfo is the score (0..1) of the latest verdict per service and
	// version. Labels: service, environment, version, baseline, decision
	// (promote, rollback, inconclusive).
	VerdictInfo = "vigil_verdict_info"
	// VerdictTimestamp is when the final verdict per service and version
	// was reached, in Unix seconds. Labels: service, environment, version,
	// decision.
	VerdictTimestamp = "vigil_verdict_timestamp_seconds"

	LabelPreviousVersion = "previous_version"
	LabelStrategy        = "strategy"
	LabelPipeline        = "pipeline"
	LabelCommit          = "commit"
	LabelBaseline        = "baseline"
	LabelDecision        = "decision"
)

// Alert series written by Vigil's rule evaluation, as Prometheus names
// them (rules.AlertMetricName, rules.AlertForStateMetricName).
const (
	// Alerts is 1 for each pending or firing alert. Labels: alertname,
	// alertstate (pending, firing) and the alert's labels. The verdict's
	// critical_alerts signal fails a version when one with
	// severity="critical" fires for its service.
	Alerts = "ALERTS"
	// AlertsForState is when each active alert went pending, in Unix
	// seconds: what restores an alert's `for` clock after a restart.
	AlertsForState = "ALERTS_FOR_STATE"
)

// Series the generated rules record (`vigil gen rules`), which the
// dashboards read.
const (
	// SLIErrorRatio is an SLI's error ratio over a window: the name is
	// followed by the window, e.g. slo:sli_error:ratio_rate5m. Labels:
	// service, environment, slo.
	SLIErrorRatio      = "slo:sli_error:ratio_rate"
	SLOObjective       = "slo:objective:ratio"
	SLOErrorBudget     = "slo:error_budget:ratio"
	SLOCurrentBurnRate = "slo:current_burn_rate:ratio"
	SLOPeriodBurnRate  = "slo:period_burn_rate:ratio"
	SLOBudgetRemaining = "slo:period_error_budget_remaining:ratio"
	// The deploy-health series, per service, environment and version.
	DeployErrorRatio  = "vigil:deploy_error_ratio:rate5m"
	DeployLatencyP99  = "vigil:deploy_latency_p99_seconds:rate5m"
	DeployRequestRate = "vigil:deploy_requests:rate5m"
)

// Derived reports whether a metric name is one Vigil derives itself: the
// span metrics (with the classic histogram's _bucket, _sum and _count), the
// service graph, the log metrics, the deployment and verdict series, the
// alert series of Vigil's rule evaluation (ALERTS, ALERTS_FOR_STATE) and
// the deploy-health series the generated rules record, from which their
// critical alerts fire (the rules manager writes these two kinds to
// storage directly, not through ingest). The SLO recordings (slo:...) are
// not among them: they feed no critical alert, and share their names with
// Sloth's, which a Prometheus may remote-write.
// The verdict and the generated rules trust these series, so only writers
// listed in ingest.accept_derived_series_from (Vigil's own collector
// replicas) may send them over remote_write or OTLP.
func Derived(name string) bool {
	switch name {
	case SpanCalls, SpanDuration, SpanDuration + "_bucket", SpanDuration + "_sum", SpanDuration + "_count",
		ServiceGraphRequests, ServiceGraphFailed, LogRecords,
		DeploymentInfo, DeploymentStarted, VerdictInfo, VerdictTimestamp,
		Alerts, AlertsForState,
		DeployErrorRatio, DeployLatencyP99, DeployRequestRate:
		return true
	}
	return false
}
