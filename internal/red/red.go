// Package red writes the PromQL of the RED signals over the series Vigil
// derives — request rate, errors and duration of the span metrics, and
// error log counts — once, for everything that reads them: the verdict's
// default signals, the generated rules and the dashboards.
//
// Every expression aggregates with sum, or sum by the labels it keeps, so
// the label of the collector replica that derived a series
// (semconv.LabelCollector) is always aggregated away: one Vigil and N
// collector replicas give the same numbers.
//
// A selector here is label matchers without braces, e.g.
// `service="checkout",environment="production"`; a window is a PromQL
// duration or a variable standing for one ("5m", "$__rate_interval").
package red

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/vigilhq/vigil/internal/semconv"
)

// Server selects the server spans (the requests a service answers) among sel.
func Server(sel string) string {
	return Join(sel, fmt.Sprintf("%s=%q", semconv.LabelSpanKind, semconv.KindServer))
}

// Failed selects the spans among sel that ended in an error.
func Failed(sel string) string {
	return Join(sel, fmt.Sprintf("%s=%q", semconv.LabelStatusCode, semconv.StatusError))
}

// ErrorLogs selects the log records among sel of severity error or fatal.
func ErrorLogs(sel string) string {
	return Join(sel, fmt.Sprintf(`%s=~"%s|%s"`, semconv.LabelSeverity, semconv.SeverityError, semconv.SeverityFatal))
}

// Join joins non-empty selectors with commas.
func Join(sels ...string) string {
	out := make([]string, 0, len(sels))
	for _, s := range sels {
		if s != "" {
			out = append(out, s)
		}
	}
	return strings.Join(out, ",")
}

// Sum is the aggregation keeping the labels by: "sum" without any,
// "sum by (service, version)" with some. Neither keeps the collector label.
func Sum(by ...string) string {
	if len(by) == 0 {
		return "sum"
	}
	return "sum by (" + strings.Join(by, ", ") + ")"
}

// Rate is the per-second rate of a counter (or a native histogram) over
// window, summed by the labels by.
func Rate(metric, sel, window string, by ...string) string {
	return aggregate(fmt.Sprintf("rate(%s{%s}[%s])", metric, sel, window), by)
}

// aggregate sums expr keeping the labels by.
func aggregate(expr string, by []string) string {
	if len(by) == 0 {
		return "sum(" + expr + ")"
	}
	return Sum(by...) + " (" + expr + ")"
}

// Requests is the rate of the server spans of sel: requests per second.
func Requests(sel, window string, by ...string) string {
	return Rate(semconv.SpanCalls, Server(sel), window, by...)
}

// Errors is the rate of the server spans of sel that failed.
func Errors(sel, window string, by ...string) string {
	return Rate(semconv.SpanCalls, Failed(Server(sel)), window, by...)
}

// ErrorRatio is the share of the server spans of sel that failed: 0, not
// nothing, for a group that served requests without an error.
func ErrorRatio(sel, window string, by ...string) string {
	total := Requests(sel, window, by...)
	return fmt.Sprintf("(%s or 0 * %s) / %s", Errors(sel, window, by...), total, total)
}

// Latency is the phi-quantile (0.99: p99) of the server spans' duration
// in seconds, from the native histogram of the span metrics, or, where
// there is none, from its classic buckets: a backend that stores no native
// histograms (VictoriaMetrics, or remote_write without
// send_native_histograms) gets the same answer from the _bucket series.
func Latency(phi float64, sel, window string, by ...string) string {
	native := fmt.Sprintf("histogram_quantile(%s, %s)", num(phi), Rate(semconv.SpanDuration, Server(sel), window, by...))
	classic := fmt.Sprintf("histogram_quantile(%s, %s)", num(phi), Rate(semconv.SpanDuration+"_bucket", Server(sel), window, append(slices.Clone(by), "le")...))
	return native + " or " + classic
}

// SlowRatio is the share of the server spans of sel slower than threshold
// seconds, from the native histogram of the span metrics.
func SlowRatio(threshold float64, sel, window string, by ...string) string {
	return fmt.Sprintf("1 - histogram_fraction(0, %s, %s)", num(threshold), Rate(semconv.SpanDuration, Server(sel), window, by...))
}

// LogErrors is the rate of the error and fatal log records of sel.
func LogErrors(sel, window string, by ...string) string {
	return Rate(semconv.LogRecords, ErrorLogs(sel), window, by...)
}

// Logs is the rate of the log records of sel.
func Logs(sel, window string, by ...string) string {
	return Rate(semconv.LogRecords, sel, window, by...)
}

// Step forms: the verdict compares counts per step, each the change of the
// counters over one step, so that samples do not overlap. They are exact
// (no extrapolation, unlike increase()), and count series by series before
// summing, so that N replicas give what one node gives:
//
//   - a series that grew counts its growth;
//   - a series that is new in the step, or restarted from zero (a restarted
//     replica: its value went down), counts its whole value;
//   - a series that is gone (a replica scaled in) counts nothing, instead
//     of taking its whole count off the sum.
//
// A step in which no series of sel exists gives no sample.

// StepIncrease is the increase of the counters of sel over step, summed.
func StepIncrease(metric, sel, step string) string {
	s := fmt.Sprintf("%s{%s}", metric, sel)
	return fmt.Sprintf("sum((%s - %s offset %s) >= 0 or %s)", s, s, step, s)
}

// StepHistogram is the increase of the native histograms of sel over
// step, summed: what was observed in the step.
func StepHistogram(metric, sel, step string) string {
	s := fmt.Sprintf("%s{%s}", metric, sel)
	return fmt.Sprintf("sum((%s - %s offset %s) and (histogram_count(%s) >= histogram_count(%s offset %s)) or %s)", s, s, step, s, s, step, s)
}

// StepRequests counts the server spans of sel in each step.
func StepRequests(sel, step string) string {
	return StepIncrease(semconv.SpanCalls, Server(sel), step)
}

// StepErrors counts the failed server spans of sel in each step.
func StepErrors(sel, step string) string {
	return StepIncrease(semconv.SpanCalls, Failed(Server(sel)), step)
}

// StepLatency is the phi-quantile of the duration of the server spans of
// sel that ended in each step.
func StepLatency(phi float64, sel, step string) string {
	return fmt.Sprintf("histogram_quantile(%s, %s)", num(phi), StepHistogram(semconv.SpanDuration, Server(sel), step))
}

// StepLogErrors counts the error and fatal log records of sel in each step.
func StepLogErrors(sel, step string) string {
	return StepIncrease(semconv.LogRecords, ErrorLogs(sel), step)
}

// StepLogs counts the log records of sel, of any severity, in each step.
func StepLogs(sel, step string) string {
	return StepIncrease(semconv.LogRecords, sel, step)
}

func num(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
