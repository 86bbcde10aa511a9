package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/promql/parser"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/vigilhq/vigil/alerting/rulegen"
	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/dashboards"
	"github.com/vigilhq/vigil/internal/peers"
)

// dashboardsE2ECatalog describes the service the test's workload is.
const dashboardsE2ECatalog = `
defaults:
  environment: production
  namespace: shop
services:
  - name: checkout
    slos:
      availability:
        objective: 99.9
      latency:
        objective: 99
        threshold: 300ms
`

// dashNeedsLaterSeries are the panels that may be empty on a Vigil fed for
// a few seconds. Their queries must still run without error.
var dashNeedsLaterSeries = map[string]string{
	// ALERTS{alertstate="firing"}: the generated alerts wait minutes (for:)
	// before they fire. The stat answers 0.
	"Firing alerts": "a firing alert",
}

// dashNeedsLaterSelfMetrics are self-monitoring queries (panel title, or
// title/refId) whose metrics appear only once something goes wrong.
var dashNeedsLaterSelfMetrics = map[string]string{
	"Rejected samples by reason/A": "a rejected sample (vigil_ingest_rejected_samples_total has no series before)",
	"Forwarding failures/C":        "a dropped sample (prometheus_remote_storage_samples_dropped_total has no series before)",
}

// TestDashboardQueriesReturnData is `vigil gen all` end to end: the rules
// generated from a catalog run in a real Vigil that notifies the Debian
// Alertmanager; the Vigil is fed traces, logs and process metrics through
// the OpenTelemetry Go SDK's OTLP exporters and forwards it to the Debian
// VictoriaMetrics; the Debian Prometheus scrapes Vigil's /metrics. Every query of the dashboards generated from the same
// catalog then runs where Grafana would run it: service and overview
// dashboards against Vigil, self-monitoring against the Prometheus. Every
// query must run; every panel outside the exception sets above must return
// data that is not NaN, and every variable must have values.
func TestDashboardQueriesReturnData(t *testing.T) {
	dir := t.TempDir()
	catPath := filepath.Join(dir, "catalog.yml")
	if err := os.WriteFile(catPath, []byte(dashboardsE2ECatalog), 0o644); err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Load(catPath)
	if err != nil {
		t.Fatal(err)
	}
	ruleFiles, err := rulegen.Generate(cat, rulegen.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, f := range ruleFiles {
		if strings.HasSuffix(f.Name, ".test.yml") {
			continue
		}
		p := filepath.Join(dir, f.Name)
		if err := os.WriteFile(p, f.Content, 0o644); err != nil {
			t.Fatal(err)
		}
		rules = append(rules, strconv.Quote(p))
	}
	am := peers.StartAlertmanager(t, "route:\n  receiver: none\nreceivers:\n  - name: none\n")
	vm := peers.StartVictoriaMetrics(t, "", "")
	v := startCollectorVigil(t, fmt.Sprintf("global:\n  evaluation_interval: 1s\nrule_files: [%s]\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [%q]\nremote_write:\n  - url: http://%s/api/v1/write\n    name: victoria-metrics\n    queue_config:\n      batch_send_deadline: 1s\n", strings.Join(rules, ", "), am.Addr, vm.Addr))
	prom := peers.StartPrometheus(t, func(string) string {
		return fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: vigil\n    static_configs:\n      - targets: [%q]\n", v.Addr)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	deployedAt := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	dashFeedCheckout(ctx, t, v, deployedAt)

	ds, err := dashboards.Generate(cat, dashboards.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"__rate_interval": "1m", "__interval": "15s", "__range": "1h", "__range_s": "3600",
		"service": "checkout", "environment": "production", "version": ".*", "instance": ".*",
	}
	// The self-monitoring dashboard goes last, after the queries the others
	// send have been scraped a few times.
	sort.SliceStable(ds, func(i, j int) bool { return ds[j].UID() == dashboards.SelfUID })
	checked := 0
	for _, d := range ds {
		base, exempt := v.URL(), dashNeedsLaterSeries
		if d.UID() == dashboards.SelfUID {
			base, exempt = prom.URL(), dashNeedsLaterSelfMetrics
			// Grafana queries Vigil all the time; here the queries above came
			// in one burst, so keep querying until Prometheus has seen the
			// query counters move.
			deadline := time.Now().Add(30 * time.Second)
			for {
				instant(t, v.URL(), `up`, time.Now())
				if n, _ := dashRunQuery(t, base, `rate(vigil_http_requests_total{handler="/api/v1/query"}[1m]) > 0`); n > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("Prometheus never saw Vigil's query counter increase")
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		t.Run(d.UID(), func(t *testing.T) {
			for _, q := range dashboards.Queries(d) {
				expr := dashExpand(q.Expr, vars)
				if q.Kind == "variable" {
					dashCheckVariable(t, base, q.Title, expr)
					continue
				}
				n, finite := dashRunQuery(t, base, expr)
				checked++
				reason, ok := exempt[q.Title+"/"+q.RefID]
				if !ok {
					reason, ok = exempt[q.Title]
				}
				if ok {
					t.Logf("%s %q %s: %d series (exempt: needs %s)", q.Kind, q.Title, q.RefID, n, reason)
					continue
				}
				if n == 0 || !finite {
					t.Errorf("%s %q %s returned no data (%d series, a finite value: %v)\n  %s", q.Kind, q.Title, q.RefID, n, finite, expr)
				}
			}
		})
	}
	// The deploy annotation: Grafana runs it as a range query and places an
	// annotation at each distinct value (useValueForTime).
	for _, q := range dashboards.Queries(ds[0]) {
		if q.Kind != "annotation" || q.Title != "Deployments" {
			continue
		}
		expr := dashExpand(q.Expr, map[string]string{"environment": ".*", "service": ".*"})
		d := rangeQuery(t, v.URL(), expr, time.Now().Add(-time.Minute), time.Now(), 15*time.Second)
		var res []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
		}
		if err := json.Unmarshal(d.Result, &res); err != nil {
			t.Fatal(err)
		}
		want := strconv.FormatInt(deployedAt.UnixMilli(), 10)
		if len(res) != 1 || res[0].Metric["version"] != "v2" || len(res[0].Values) == 0 || res[0].Values[0][1] != want {
			t.Errorf("deploy annotation %s: %s, want one v2 series valued %s (the deploy time in ms)", expr, d.Result, want)
		}
	}
	if checked < 40 {
		t.Fatalf("only %d queries checked", checked)
	}
}

// dashFeedCheckout sends eight rounds, a second apart, of checkout v1 and v2
// telemetry: server spans (v2 fails more and is slower), logs (errors and
// infos), OpenTelemetry process metrics and Prometheus-client process
// metrics by remote_write. It also writes the deployment of v2 (replacing
// v1) and its rollback verdict as the series documented for the deploy
// package (vigil_deployment_info, vigil_deployment_started_timestamp_seconds,
// vigil_verdict_info, vigil_verdict_timestamp_seconds), by remote_write
// until its API (POST /api/v1/deployments, /api/v1/verify) writes them.
func dashFeedCheckout(ctx context.Context, t *testing.T, v *peers.Vigil, deployedAt time.Time) {
	t.Helper()
	type client struct {
		tp  *sdktrace.TracerProvider
		lp  *sdklog.LoggerProvider
		mp  *sdkmetric.MeterProvider
		cpu metric.Float64Counter
		mem metric.Int64Gauge
	}
	clients := map[string]*client{}
	for _, version := range []string{"v1", "v2"} {
		res := otelResource("checkout", version)
		texp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(v.OTLPGRPC), otlptracegrpc.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		lexp, err := otlploghttp.New(ctx, otlploghttp.WithEndpoint(v.OTLPHTTP), otlploghttp.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		mexp, err := otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(v.OTLPGRPC), otlpmetricgrpc.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		c := &client{
			tp: sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithBatcher(texp)),
			lp: sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(sdklog.NewBatchProcessor(lexp))),
			mp: sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp, sdkmetric.WithInterval(time.Hour)))),
		}
		meter := c.mp.Meter("e2e")
		c.cpu, _ = meter.Float64Counter("process.cpu.time", metric.WithUnit("s"))
		c.mem, _ = meter.Int64Gauge("process.memory.usage", metric.WithUnit("By"))
		clients[version] = c
	}
	defer func() {
		for _, c := range clients {
			_ = c.tp.Shutdown(ctx)
			_ = c.lp.Shutdown(ctx)
			_ = c.mp.Shutdown(ctx)
		}
	}()

	for round := range 8 {
		for version, c := range clients {
			tracer := c.tp.Tracer("e2e")
			logger := c.lp.Logger("e2e")
			errEvery := 10
			latency := 50 * time.Millisecond
			if version == "v2" {
				errEvery, latency = 4, 250*time.Millisecond
			}
			end := time.Now()
			for i := range 20 {
				_, span := tracer.Start(ctx, "POST /orders", trace.WithSpanKind(trace.SpanKindServer),
					trace.WithTimestamp(end.Add(-latency-time.Duration(i)*time.Millisecond)))
				if i%errEvery == 0 {
					span.SetStatus(codes.Error, "payment declined")
				}
				span.End(trace.WithTimestamp(end))
			}
			for i := range 4 {
				var r otellog.Record
				r.SetTimestamp(time.Now())
				if i == 0 {
					r.SetSeverity(otellog.SeverityError)
					r.SetSeverityText("ERROR")
					r.SetBody(attribute.StringValue("payment provider timeout"))
				} else {
					r.SetSeverity(otellog.SeverityInfo)
					r.SetBody(attribute.StringValue("order placed"))
				}
				logger.Emit(ctx, r)
			}
			c.cpu.Add(ctx, 0.25)
			c.mem.Record(ctx, int64(100<<20+round<<20))
			// The same process metrics as a Prometheus client library
			// exports them, by remote_write.
			now := time.Now().UnixMilli()
			remoteWrite(t, v.URL(), &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
				{Labels: dashPromLabels("process_cpu_seconds_total", "checkout", version), Samples: []prompb.Sample{{Value: float64(round) * 0.3, Timestamp: now}}},
				{Labels: dashPromLabels("process_resident_memory_bytes", "checkout", version), Samples: []prompb.Sample{{Value: 80 << 20, Timestamp: now}}},
			}})
		}
		deployment := `service="checkout",namespace="shop",environment="production",version="v2"`
		verdict := `service="checkout",environment="production",version="v2",decision="rollback"`
		now := time.Now().UnixMilli()
		remoteWrite(t, v.URL(), &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			{Labels: dashSeriesLabels(t, `vigil_deployment_info{`+deployment+`,previous_version="v1",pipeline="github-actions",commit="4f2a9c1",strategy="canary"}`), Samples: []prompb.Sample{{Value: 1, Timestamp: now}}},
			{Labels: dashSeriesLabels(t, `vigil_deployment_started_timestamp_seconds{`+deployment+`}`), Samples: []prompb.Sample{{Value: float64(deployedAt.Unix()), Timestamp: now}}},
			{Labels: dashSeriesLabels(t, `vigil_verdict_info{`+verdict+`,baseline="v1"}`), Samples: []prompb.Sample{{Value: 0.2, Timestamp: now}}},
			{Labels: dashSeriesLabels(t, `vigil_verdict_timestamp_seconds{`+verdict+`}`), Samples: []prompb.Sample{{Value: float64(deployedAt.Add(5 * time.Minute).Unix()), Timestamp: now}}},
		}})
		for _, c := range clients {
			if err := c.tp.ForceFlush(ctx); err != nil {
				t.Fatalf("flush spans: %v", err)
			}
			if err := c.lp.ForceFlush(ctx); err != nil {
				t.Fatalf("flush logs: %v", err)
			}
			if err := c.mp.ForceFlush(ctx); err != nil {
				t.Fatalf("flush metrics: %v", err)
			}
		}
		time.Sleep(time.Second)
	}
	// Span and log metrics flush every second (fastFlushConfig).
	dashWaitFor(t, v.URL(), `sum(traces_span_metrics_calls_total{service="checkout",version="v2"}) >= 160`)
	dashWaitFor(t, v.URL(), `sum(log_records_total{service="checkout",severity="error"}) >= 16`)
}

// dashSeriesLabels turns `name{label="value",...}` into remote-write labels.
func dashSeriesLabels(t *testing.T, series string) []prompb.Label {
	t.Helper()
	ls, err := parser.NewParser(parser.Options{}).ParseMetric(series)
	if err != nil {
		t.Fatalf("%s: %v", series, err)
	}
	var out []prompb.Label
	ls.Range(func(l labels.Label) { out = append(out, prompb.Label{Name: l.Name, Value: l.Value}) })
	return out
}

func dashPromLabels(name, job, version string) []prompb.Label {
	return []prompb.Label{{Name: "__name__", Value: name}, {Name: "instance", Value: job + "-0:8080"}, {Name: "job", Value: job}, {Name: "version", Value: version}}
}

var dashGrafanaVarRE = regexp.MustCompile(`\$\{?(__[a-z_]+|[a-z]+)\}?`)

// dashExpand substitutes Grafana variables the way Grafana does for a single
// value; "$1" (a label_replace group) is not a variable and stays.
func dashExpand(expr string, vars map[string]string) string {
	return dashGrafanaVarRE.ReplaceAllStringFunc(expr, func(m string) string {
		if v, ok := vars[dashGrafanaVarRE.FindStringSubmatch(m)[1]]; ok {
			return v
		}
		return m
	})
}

// dashRunQuery runs an instant query and returns how many series it returned
// and whether any value is finite.
func dashRunQuery(t *testing.T, base, expr string) (int, bool) {
	t.Helper()
	d := instant(t, base, expr, time.Now())
	switch d.ResultType {
	case "scalar":
		var s [2]any
		if err := json.Unmarshal(d.Result, &s); err != nil {
			t.Fatal(err)
		}
		return 1, dashFinite(s[1])
	case "vector":
		var res []struct {
			Value     [2]any `json:"value"`
			Histogram [2]any `json:"histogram"`
		}
		if err := json.Unmarshal(d.Result, &res); err != nil {
			t.Fatal(err)
		}
		ok := false
		for _, r := range res {
			ok = ok || dashFinite(r.Value[1]) || r.Histogram[1] != nil
		}
		return len(res), ok
	}
	t.Fatalf("query %s: result type %s", expr, d.ResultType)
	return 0, false
}

func dashFinite(v any) bool {
	s, ok := v.(string)
	if !ok {
		return false
	}
	f, err := strconv.ParseFloat(s, 64)
	return err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
}

var dashLabelValuesCall = regexp.MustCompile(`^label_values\((.+), *([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// dashCheckVariable asks for the variable's values as Grafana does:
// GET /api/v1/label/<label>/values?match[]=<selector>.
func dashCheckVariable(t *testing.T, base, name, expr string) {
	t.Helper()
	m := dashLabelValuesCall.FindStringSubmatch(expr)
	if m == nil {
		t.Fatalf("variable %s: %q is not label_values(selector, label)", name, expr)
	}
	code, r := apiGet(t, base, "/api/v1/label/"+m[2]+"/values", url.Values{"match[]": {m[1]}})
	if code != 200 || r.Status != "success" {
		t.Fatalf("variable %s: %d %s", name, code, r.Error)
	}
	var values []string
	if err := json.Unmarshal(r.Data, &values); err != nil {
		t.Fatal(err)
	}
	if len(values) == 0 {
		t.Errorf("variable %s has no values: %s", name, expr)
	}
	t.Logf("variable %s = %s", name, strings.Join(values, ", "))
}

// dashWaitFor polls until the instant query returns a non-empty result.
func dashWaitFor(t *testing.T, base, q string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if n, _ := dashRunQuery(t, base, q); n > 0 {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s on %s", q, base)
}
