package ui

import (
	"context"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/vigilhq/vigil/internal/plain"
)

// sampleInterval is how often Run reads the self-metrics, and keepSamples
// how many readings it keeps: rates on the status page are over the last
// minute or so.
const (
	sampleInterval = 5 * time.Second
	keepSamples    = 13
)

// metricSample is a reading of the self-metrics the status page shows:
// "family{label=value,...}" → value.
type metricSample struct {
	at     time.Time
	values map[string]float64
}

// statusFamilies are the self-metrics the status page reads.
var statusFamilies = []string{
	"vigil_ingest_samples_total", "vigil_ingest_requests_total", "vigil_ingest_rejected_samples_total",
	"vigil_span_metrics_series", "vigil_span_metrics_spans_total", "vigil_log_metrics_records_total",
	"prometheus_tsdb_head_series",
	"prometheus_rule_group_rules", "prometheus_rule_evaluation_failures_total", "prometheus_rule_group_last_evaluation_timestamp_seconds",
	"prometheus_notifications_alertmanagers_discovered", "prometheus_notifications_sent_total", "prometheus_notifications_errors_total",
	"prometheus_notifications_dropped_total", "prometheus_notifications_queue_length",
	"prometheus_remote_storage_samples_pending", "prometheus_remote_storage_samples_failed_total", "prometheus_remote_storage_samples_total",
	"prometheus_remote_storage_highest_timestamp_in_seconds", "prometheus_remote_storage_queue_highest_sent_timestamp_seconds",
	"vigil_otlp_forward_queue_bytes", "vigil_otlp_forward_sent_requests_total", "vigil_otlp_forward_dropped_requests_total",
	"vigil_verifications_running", "vigil_verdicts_total",
}

// Run reads the self-metrics every few seconds until ctx ends, so that the
// status page shows rates over the last minute.
func (u *UI) Run(ctx context.Context) {
	t := time.NewTicker(sampleInterval)
	defer t.Stop()
	u.keep(u.gather())
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			u.keep(u.gather())
		}
	}
}

// keep stores a reading, forgetting the oldest beyond keepSamples.
func (u *UI) keep(s metricSample) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.samples = append(u.samples, s)
	if len(u.samples) > keepSamples {
		u.samples = u.samples[len(u.samples)-keepSamples:]
	}
}

// gather reads the self-metrics the status page shows.
func (u *UI) gather() metricSample {
	s := metricSample{at: u.now(), values: map[string]float64{}}
	mfs, err := u.cfg.Metrics.Gather()
	if err != nil {
		u.logger.Debug("Gathering self-metrics for the status page", "err", err)
	}
	for _, mf := range mfs {
		if !slices.Contains(statusFamilies, mf.GetName()) {
			continue
		}
		for _, m := range mf.GetMetric() {
			s.values[seriesKey(mf.GetName(), m.GetLabel())] = metricValue(m)
		}
	}
	return s
}

func seriesKey(name string, labels []*dto.LabelPair) string {
	parts := make([]string, 0, len(labels))
	for _, l := range labels {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	sort.Strings(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// labelOf returns the value of label in a series key.
func labelOf(key, label string) string {
	_, rest, ok := strings.Cut(key, "{")
	if !ok {
		return ""
	}
	for _, kv := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == label {
			return v
		}
	}
	return ""
}

// readings are the current reading and the oldest kept, for rates.
type readings struct {
	now, then metricSample
}

// sum adds the series of family matching keep, in the current reading.
func (r readings) sum(family string, keep func(key string) bool) float64 {
	return sumOf(r.now, family, keep)
}

func sumOf(s metricSample, family string, keep func(key string) bool) float64 {
	var total float64
	for k, v := range s.values {
		if strings.HasPrefix(k, family+"{") && (keep == nil || keep(k)) {
			total += v
		}
	}
	return total
}

// rate is the per-second increase of a counter family over the readings
// ("" when there is one reading only).
func (r readings) rate(family string, keep func(key string) bool) (float64, bool) {
	dt := r.now.at.Sub(r.then.at).Seconds()
	if dt < 1 {
		return 0, false
	}
	d := sumOf(r.now, family, keep) - sumOf(r.then, family, keep)
	if d < 0 { // restarted counter
		return 0, false
	}
	return d / dt, true
}

// receiverRow is one receiver's line on the status page.
type receiverRow struct {
	Name      string
	Accepted  string // per kind per second
	Requests  string
	Errors    string
	Rejected  string
	TotalSeen string
}

type statusPage struct {
	Version, Revision, GoVersion string
	Uptime                       string
	Listeners                    []Listener
	StoragePath, Retention       string
	RateWindow                   string
	Receivers                    []receiverRow
	HeadSeries, SpanSeries       string
	Spans, LogRecords            string
	Rules                        []ruleRow
	RuleFailures                 string
	Alertmanagers                string
	Notifications                string
	Queues                       []queueRow
	Running                      string
	Verdicts                     string
}

type ruleRow struct {
	Group, Rules, LastEval string
}

type queueRow struct {
	Kind, Name, Pending, Failed, Lag string
}

var receivers = []string{"remote_write", "otlp", "loki"}

func (u *UI) readings() readings {
	now := u.gather()
	u.mu.Lock()
	defer u.mu.Unlock()
	then := now
	for _, s := range u.samples {
		if now.at.Sub(s.at) >= time.Second {
			then = s
			break
		}
	}
	return readings{now: now, then: then}
}

func (u *UI) status(*http.Request) (string, any, int) {
	r := u.readings()
	p := statusPage{
		Version: u.cfg.Version, Revision: u.cfg.Revision, GoVersion: u.cfg.GoVersion,
		Listeners: u.cfg.Listeners, StoragePath: u.cfg.StoragePath, Retention: u.cfg.Retention,
	}
	if !u.cfg.Started.IsZero() {
		p.Uptime = plain.Duration(u.now().Sub(u.cfg.Started))
	}
	if dt := r.now.at.Sub(r.then.at); dt >= time.Second {
		p.RateWindow = plain.Duration(dt)
	}
	perSec := func(v float64, ok bool, unit string) string {
		if !ok {
			return "measuring…"
		}
		return plain.Rate(v, unit)
	}
	for _, name := range receivers {
		of := func(k string) bool { return labelOf(k, "receiver") == name }
		row := receiverRow{Name: name}
		var kinds []string
		for _, kind := range []string{"float", "histogram", "exemplar", "span", "log_record"} {
			keep := func(k string) bool { return of(k) && labelOf(k, "kind") == kind }
			if r.sum("vigil_ingest_samples_total", keep) == 0 {
				continue
			}
			v, ok := r.rate("vigil_ingest_samples_total", keep)
			kinds = append(kinds, perSec(v, ok, strings.ReplaceAll(kind, "_", " ")+"s"))
		}
		row.Accepted = strings.Join(kinds, ", ")
		if row.Accepted == "" {
			row.Accepted = "nothing received yet"
		}
		v, ok := r.rate("vigil_ingest_requests_total", of)
		row.Requests = perSec(v, ok, "req")
		bad := func(k string) bool {
			c := labelOf(k, "code")
			return of(k) && !strings.HasPrefix(c, "2") && c != "OK"
		}
		v, ok = r.rate("vigil_ingest_requests_total", bad)
		row.Errors = perSec(v, ok, "req")
		v, ok = r.rate("vigil_ingest_rejected_samples_total", of)
		row.Rejected = perSec(v, ok, "sample")
		row.TotalSeen = plain.Count(r.sum("vigil_ingest_requests_total", of)) + " requests since start"
		p.Receivers = append(p.Receivers, row)
	}
	p.HeadSeries = plain.Count(r.sum("prometheus_tsdb_head_series", nil))
	p.SpanSeries = plain.Count(r.sum("vigil_span_metrics_series", nil))
	v, ok := r.rate("vigil_span_metrics_spans_total", nil)
	p.Spans = perSec(v, ok, "span")
	v, ok = r.rate("vigil_log_metrics_records_total", nil)
	p.LogRecords = perSec(v, ok, "record")

	groups := map[string]*ruleRow{}
	for k, val := range r.now.values {
		g := labelOf(k, "rule_group")
		if g == "" {
			continue
		}
		row := groups[g]
		if row == nil {
			row = &ruleRow{Group: g, LastEval: "not yet"}
			groups[g] = row
		}
		switch {
		case strings.HasPrefix(k, "prometheus_rule_group_rules{"):
			row.Rules = plain.Count(val)
		case strings.HasPrefix(k, "prometheus_rule_group_last_evaluation_timestamp_seconds{") && val > 0:
			row.LastEval = plain.Ago(time.Unix(int64(val), 0), u.now())
		}
	}
	for _, row := range groups {
		p.Rules = append(p.Rules, *row)
	}
	sort.Slice(p.Rules, func(i, j int) bool { return p.Rules[i].Group < p.Rules[j].Group })
	p.RuleFailures = plain.Count(r.sum("prometheus_rule_evaluation_failures_total", nil)) + " since start"
	p.Alertmanagers = plain.Count(r.sum("prometheus_notifications_alertmanagers_discovered", nil))
	p.Notifications = plain.Count(r.sum("prometheus_notifications_sent_total", nil)) + " sent, " +
		plain.Count(r.sum("prometheus_notifications_errors_total", nil)) + " errors, " +
		plain.Count(r.sum("prometheus_notifications_dropped_total", nil)) + " dropped, " +
		plain.Count(r.sum("prometheus_notifications_queue_length", nil)) + " queued"

	remotes := map[string]bool{}
	for k := range r.now.values {
		if strings.HasPrefix(k, "prometheus_remote_storage_") {
			if n := labelOf(k, "remote_name"); n != "" {
				remotes[n] = true
			}
		}
	}
	for _, name := range sortedKeys(remotes) {
		of := func(k string) bool { return labelOf(k, "remote_name") == name }
		row := queueRow{Kind: "remote_write", Name: name,
			Pending: plain.Plural(r.sum("prometheus_remote_storage_samples_pending", of), "sample"),
			Failed:  plain.Plural(r.sum("prometheus_remote_storage_samples_failed_total", of), "sample")}
		hi, sent := r.sum("prometheus_remote_storage_highest_timestamp_in_seconds", nil), r.sum("prometheus_remote_storage_queue_highest_sent_timestamp_seconds", of)
		if hi > 0 && sent > 0 {
			row.Lag = plain.Duration(time.Duration((hi - sent) * float64(time.Second)))
		} else {
			row.Lag = "-"
		}
		p.Queues = append(p.Queues, row)
	}
	targets := map[string]bool{}
	for k := range r.now.values {
		if strings.HasPrefix(k, "vigil_otlp_forward_") {
			if n := labelOf(k, "target"); n != "" {
				targets[n] = true
			}
		}
	}
	for _, name := range sortedKeys(targets) {
		of := func(k string) bool { return labelOf(k, "target") == name }
		p.Queues = append(p.Queues, queueRow{Kind: "OTLP", Name: name,
			Pending: plain.Count(r.sum("vigil_otlp_forward_queue_bytes", of)) + " bytes",
			Failed:  plain.Plural(r.sum("vigil_otlp_forward_dropped_requests_total", of), "request") + " dropped",
			Lag:     "-"})
	}
	p.Running = plain.Count(r.sum("vigil_verifications_running", nil))
	var decisions []string
	for _, d := range []string{"promote", "rollback", "inconclusive", "error"} {
		n := r.sum("vigil_verdicts_total", func(k string) bool { return labelOf(k, "decision") == d })
		decisions = append(decisions, plain.Count(n)+" "+d)
	}
	p.Verdicts = strings.Join(decisions, ", ")
	return "status", p, http.StatusOK
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
