package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
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
	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/grafanatest"
	"github.com/vigilhq/vigil/internal/peers"
)

// dashboardsE2ECatalog describes the services the test's workload is:
// checkout with both SLOs, cart with an availability SLO and a matcher on
// a label its span metrics carry (span_metrics.dimensions) and its log
// metrics do not.
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
  - name: cart
    matchers: 'cluster="eu-1"'
    slos:
      availability:
        objective: 99.5
`

// dashboardsE2ERules fire an alert about each service within seconds (the
// generated SLO alerts wait minutes before they fire), which keeps firing
// while the queries run.
const dashboardsE2ERules = `groups:
  - name: e2e
    rules:
      - alert: CheckoutErrorsE2E
        expr: sum by (service) (rate(traces_span_metrics_calls_total{service="checkout",status_code="STATUS_CODE_ERROR"}[10s])) > 0
        for: 2s
        keep_firing_for: 10m
        labels:
          severity: warning
          slo: availability
      - alert: CartErrorLogsE2E
        expr: sum by (service) (rate(log_records_total{service="cart",severity="error"}[10s])) > 0
        for: 2s
        keep_firing_for: 10m
        labels:
          severity: warning
`

// dashNeedsLaterSelfMetrics are self-monitoring queries (panel title, or
// title/refId) whose metrics appear only once something goes wrong.
var dashNeedsLaterSelfMetrics = map[string]string{
	"Rejected samples by reason/A": "a rejected sample (vigil_ingest_rejected_samples_total has no series before)",
	"Forwarding failures/C":        "a dropped sample (prometheus_remote_storage_samples_dropped_total has no series before)",
}

// TestDashboardQueriesReturnData is `vigil gen all` end to end, in the
// scenario every panel is about. The rules generated from a catalog (and
// one alert that fires within seconds) run in a real Vigil that notifies
// the Debian Alertmanager, forwards to the Debian VictoriaMetrics and is
// scraped by the Debian Prometheus. The OpenTelemetry Go SDK's OTLP
// exporters send traces, logs and process metrics of checkout v1 and v2
// and of cart v1, v2 and v3 (v3 without errors); deployments are recorded
// and verified through Vigil's API: checkout v2 and cart v2 are rolled
// back, then cart v3 replaces v2.
//
// Every query of the dashboards generated from the same catalog then runs
// where Grafana would run it (service and overview dashboards against
// Vigil, self-monitoring against Prometheus): every panel outside the
// exception set must return data that is not NaN, every variable values.
// Then what Grafana makes of the answers: the tables, merged as Grafana
// merges them, have one row per current deployment and per verification;
// the annotations are one marker per deployment, per verdict and per
// alert, never a shaded region; a by-version panel shows every version
// with traffic, a version without errors at 0; and cart's verdict counts
// its error logs although its catalog matcher names a label log metrics
// do not have.
func TestDashboardQueriesReturnData(t *testing.T) {
	testStart := time.Now()
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
	ruleFiles = append(ruleFiles, rulegen.File{Name: "e2e.rules.yml", Content: []byte(dashboardsE2ERules)})
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
	vigilYML := filepath.Join(dir, "vigil.yml")
	if err := os.WriteFile(vigilYML, []byte(fmt.Sprintf(`global:
  evaluation_interval: 1s
rule_files: [%s]
alerting:
  alertmanagers:
    - static_configs:
        - targets: [%q]
remote_write:
  - url: http://%s/api/v1/write
    name: victoria-metrics
    queue_config:
      batch_send_deadline: 1s
span_metrics:
  flush_interval: 1s
  dimensions: [cluster]
log_metrics:
  flush_interval: 1s
deploy:
  catalog: %q
  step: 1s
  rate_window: 2s
  window: 10s
  series_interval: 1s
`, strings.Join(rules, ", "), am.Addr, vm.Addr, catPath)), 0o644); err != nil {
		t.Fatal(err)
	}
	v := peers.StartVigil(t, filepath.Join(dir, "data"), "--config", vigilYML)
	prom := peers.StartPrometheus(t, func(string) string {
		return fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: vigil\n    static_configs:\n      - targets: [%q]\n", v.Addr)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	feed := newDashFeed(ctx, t, v)
	defer feed.stop()
	// Checkout v2 fails more than v1; cart v2 logs an error for every
	// other request (its spans fail no more than v1's); cart v3 never fails.
	feed.add(dashWorkload{service: "checkout", version: "v1", errorEvery: 10, latency: 50 * time.Millisecond, errorLogEvery: 40})
	feed.add(dashWorkload{service: "cart", version: "v1", cluster: "eu-1", errorEvery: 400, latency: 20 * time.Millisecond, errorLogEvery: 40})
	feed.rounds(4)

	dashRecordDeployment(t, v.URL(), `{"service":"checkout","environment":"production","version":"v2","previousVersion":"v1","strategy":"canary","pipeline":"github-actions","commit":"4f2a9c1"}`)
	dashRecordDeployment(t, v.URL(), `{"service":"cart","environment":"production","version":"v2","previousVersion":"v1","strategy":"canary"}`)
	feed.add(dashWorkload{service: "checkout", version: "v2", errorEvery: 4, latency: 250 * time.Millisecond, errorLogEvery: 4})
	feed.add(dashWorkload{service: "cart", version: "v2", cluster: "eu-1", errorEvery: 400, latency: 20 * time.Millisecond, errorLogEvery: 2})
	checkoutJob := dashVerify(t, v.URL(), `{"service":"checkout","version":"v2"}`)
	cartJob := dashVerify(t, v.URL(), `{"service":"cart","version":"v2"}`)
	verdicts := map[string]verdict.Verdict{}
	for svc, id := range map[string]string{"checkout": checkoutJob, "cart": cartJob} {
		for {
			st := dashVerifyStatus(t, v.URL(), id)
			if st.Final {
				verdicts[svc] = *st.Verdict
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("verification of %s v2 never reached a final verdict: %+v", svc, st)
			}
			feed.rounds(1)
		}
	}
	for svc, vd := range verdicts {
		if vd.Decision != verdict.Rollback {
			t.Errorf("%s v2: %s (%s), want rollback", svc, vd.Decision, vd.Reason)
		}
	}
	// Cart's log signal counts its error logs: its catalog matcher
	// (cluster="eu-1") is on its span signals and left out of the log one.
	for _, s := range verdicts["cart"].Signals {
		switch s.Name {
		case "log_error_ratio":
			if s.Counts == nil || s.Counts[0].Bad == 0 || s.Status != verdict.StatusFail {
				t.Errorf("cart v2 log_error_ratio counted %+v (%s: %s), want its error logs, failing", s.Counts, s.Status, s.Reason)
			}
			if regexp.MustCompile(`log_records_total\{[^}]*cluster`).MatchString(s.Query) {
				t.Errorf("cart's log signal selects a label log metrics do not have: %s", s.Query)
			}
		case "error_ratio":
			if !strings.Contains(s.Query, `cluster="eu-1"`) || s.Counts == nil || s.Counts[0].Total == 0 {
				t.Errorf("cart's error ratio: %+v\n  %s", s.Counts, s.Query)
			}
		}
	}
	if len(verdicts["cart"].ErrorLogs) == 0 {
		t.Errorf("cart v2 verdict quotes no error logs")
	}

	// Cart v3 replaces v2: at once, only v3 is cart's current deployment.
	dashRecordDeployment(t, v.URL(), `{"service":"cart","environment":"production","version":"v3","previousVersion":"v2","strategy":"canary"}`)
	if got := dashVersionsNow(t, v.URL(), `vigil_deployment_info{service="cart"}`); len(got) != 1 || got["v3"] != 1 {
		t.Errorf("cart's vigil_deployment_info right after v3 was recorded: %v, want v3 only", got)
	}
	feed.add(dashWorkload{service: "cart", version: "v3", cluster: "eu-1", latency: 20 * time.Millisecond})
	feed.rounds(6)
	// Span and log metrics flush every second (fastFlushConfig); the alert
	// fires two seconds after checkout's first errors.
	dashWaitFor(t, v.URL(), `sum by (version) (traces_span_metrics_calls_total{service="cart",version="v3",cluster="eu-1"}) >= 200`)
	dashWaitFor(t, v.URL(), `sum(log_records_total{service="cart",version="v3",severity="info"}) > 0`)
	for _, alert := range []string{"CheckoutErrorsE2E", "CartErrorLogsE2E"} {
		dashWaitFor(t, v.URL(), fmt.Sprintf(`ALERTS_FOR_STATE{alertname=%q} and ignoring (alertstate) ALERTS{alertstate="firing"}`, alert))
	}
	feed.rounds(2)

	ds, err := dashboards.Generate(cat, dashboards.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	base := map[string]string{
		"__rate_interval": "1m", "__interval": "15s", "__range": "1h", "__range_s": "3600",
		"service": ".*", "environment": ".*", "version": ".*", "instance": ".*",
	}
	// The self-monitoring dashboard goes last, after the queries the others
	// send have been scraped a few times.
	sort.SliceStable(ds, func(i, j int) bool { return ds[j].UID() == dashboards.SelfUID })
	checked := 0
	for _, d := range ds {
		vars := maps.Clone(base)
		for _, tv := range d.Model.Templating.List {
			if tv.Type == "custom" && tv.Current != nil && tv.Current.Value.String != nil {
				vars[tv.Name] = *tv.Current.Value.String // a service dashboard's service
			}
		}
		if strings.HasPrefix(d.UID(), "vigil-svc-") {
			vars["environment"] = "production"
		}
		url, exempt := v.URL(), map[string]string{}
		if d.UID() == dashboards.SelfUID {
			url, exempt = prom.URL(), dashNeedsLaterSelfMetrics
			// Grafana queries Vigil all the time; here the queries above came
			// in one burst, so keep querying until Prometheus has seen the
			// query counters move.
			deadline := time.Now().Add(30 * time.Second)
			for {
				instant(t, v.URL(), `up`, time.Now())
				if n, _ := dashRunQuery(t, url, `rate(vigil_http_requests_total{handler="/api/v1/query"}[1m]) > 0`); n > 0 {
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
					dashCheckVariable(t, url, q.Title, expr)
					continue
				}
				n, finite := dashRunQuery(t, url, expr)
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
				if q.Kind == "panel" && strings.HasSuffix(q.Title, "by version") && d.UID() != dashboards.SelfUID {
					dashCheckEveryVersion(t, url, vars["service"], q, expr)
				}
			}
		})
	}
	if checked < 60 {
		t.Fatalf("only %d queries checked", checked)
	}

	overview := ds[0]
	if overview.UID() != dashboards.OverviewUID {
		t.Fatalf("first dashboard %s", overview.UID())
	}
	// Tables: one row per current deployment, one per verification.
	deployments := dashTable(t, v.URL(), overview, "Current deployments", base)
	var rows []string
	for _, r := range deployments {
		rows = append(rows, fmt.Sprintf("%v %v deployed=%v verdict=%v", r["service"], r["version"], r["Value #B"] != nil, r["decision"]))
	}
	sort.Strings(rows)
	if want := []string{"cart v3 deployed=true verdict=<nil>", "checkout v2 deployed=true verdict=rollback"}; !slices.Equal(rows, want) {
		t.Errorf("Current deployments rows:\n  %s\nwant\n  %s", strings.Join(rows, "\n  "), strings.Join(want, "\n  "))
	}
	rows = nil
	for _, r := range dashTable(t, v.URL(), overview, "Recent verdicts", base) {
		rows = append(rows, fmt.Sprintf("%v %v %v baseline=%v timed=%v", r["service"], r["version"], r["decision"], r["baseline"], r["Value #B"] != nil))
	}
	sort.Strings(rows)
	if want := []string{"cart v2 rollback baseline=v1 timed=true", "checkout v2 rollback baseline=v1 timed=true"}; !slices.Equal(rows, want) {
		t.Errorf("Recent verdicts rows:\n  %s\nwant\n  %s", strings.Join(rows, "\n  "), strings.Join(want, "\n  "))
	}

	// Annotations, as Grafana draws them from its range queries over the
	// test's time: a marker per deployment, per verification and per alert.
	// Grafana runs them at their step (1m) with $__interval that step; the
	// scenario lasts less than a minute, so here the step is 5s.
	step := 5 * time.Second
	events := map[string][]string{}
	for _, a := range overview.Model.Annotations.List {
		if a.Expr == nil {
			continue
		}
		ann := grafanatest.Annotation{UseValueForTime: a.UseValueForTime != nil && *a.UseValueForTime, Step: step}
		if a.TitleFormat != nil {
			ann.TitleFormat = *a.TitleFormat
		}
		// Grafana sets $__interval to the query's step (the annotation's).
		expr := dashExpand(*a.Expr, map[string]string{"__interval": "5s", "service": ".*", "environment": ".*"})
		for _, e := range grafanatest.AnnotationEvents(ann, dashRange(t, v.URL(), expr, testStart, time.Now().Add(step), step)) {
			if e.Region() {
				t.Errorf("annotation %s: a shaded region %s from %s to %s", a.Name, e.Title, time.UnixMilli(e.Time), time.UnixMilli(e.TimeEnd))
			}
			if e.Time < testStart.UnixMilli() || e.Time > time.Now().UnixMilli() {
				t.Errorf("annotation %s: %s at %s, outside the test", a.Name, e.Title, time.UnixMilli(e.Time))
			}
			events[a.Name] = append(events[a.Name], e.Title)
		}
	}
	for name, want := range map[string][]string{
		"Deployments": {"Deploy cart v2", "Deploy cart v3", "Deploy checkout v2"},
		"Verdicts":    {"Verdict rollback (shadow): cart v2", "Verdict rollback (shadow): checkout v2"},
		"Alerts":      {"CartErrorLogsE2E", "CheckoutErrorsE2E"},
	} {
		got := events[name]
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("annotation %s: events %q, want one marker each of %q", name, got, want)
		}
	}
}

// dashWorkload is one version of a service as the test's OTLP clients
// play it: 40 server spans a round, every errorEvery-th failing, and a log
// record for every fourth span, every errorLogEvery-th span logging an
// error instead (0: never).
type dashWorkload struct {
	service, version, cluster string
	errorEvery, errorLogEvery int
	latency                   time.Duration
}

type dashClient struct {
	dashWorkload
	tp    *sdktrace.TracerProvider
	lp    *sdklog.LoggerProvider
	mp    *sdkmetric.MeterProvider
	cpu   metric.Float64Counter
	mem   metric.Int64Gauge
	spans int
}

// dashFeed sends the workloads' telemetry in rounds, each flushed before
// the next: spans and logs over OTLP/gRPC and OTLP/HTTP with the
// OpenTelemetry SDK, OpenTelemetry process metrics over OTLP, and
// Prometheus-client process metrics by remote_write.
type dashFeed struct {
	ctx     context.Context
	t       *testing.T
	v       *peers.Vigil
	clients []*dashClient
}

func newDashFeed(ctx context.Context, t *testing.T, v *peers.Vigil) *dashFeed {
	return &dashFeed{ctx: ctx, t: t, v: v}
}

func (f *dashFeed) add(w dashWorkload) {
	f.t.Helper()
	res := otelResource(w.service, w.version)
	texp, err := otlptracegrpc.New(f.ctx, otlptracegrpc.WithEndpoint(f.v.OTLPGRPC), otlptracegrpc.WithInsecure())
	if err != nil {
		f.t.Fatal(err)
	}
	lexp, err := otlploghttp.New(f.ctx, otlploghttp.WithEndpoint(f.v.OTLPHTTP), otlploghttp.WithInsecure())
	if err != nil {
		f.t.Fatal(err)
	}
	mexp, err := otlpmetricgrpc.New(f.ctx, otlpmetricgrpc.WithEndpoint(f.v.OTLPGRPC), otlpmetricgrpc.WithInsecure())
	if err != nil {
		f.t.Fatal(err)
	}
	c := &dashClient{
		dashWorkload: w,
		tp:           sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithBatcher(texp)),
		lp:           sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(sdklog.NewBatchProcessor(lexp))),
		mp:           sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp, sdkmetric.WithInterval(time.Hour)))),
	}
	meter := c.mp.Meter("e2e")
	c.cpu, _ = meter.Float64Counter("process.cpu.time", metric.WithUnit("s"))
	c.mem, _ = meter.Int64Gauge("process.memory.usage", metric.WithUnit("By"))
	f.clients = append(f.clients, c)
}

func (f *dashFeed) stop() {
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range f.clients {
		_ = c.tp.Shutdown(sctx)
		_ = c.lp.Shutdown(sctx)
		_ = c.mp.Shutdown(sctx)
	}
}

// rounds sends n rounds, half a second apart.
func (f *dashFeed) rounds(n int) {
	f.t.Helper()
	for range n {
		for _, c := range f.clients {
			f.round(c)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (f *dashFeed) round(c *dashClient) {
	f.t.Helper()
	ctx := f.ctx
	tracer, logger := c.tp.Tracer("e2e"), c.lp.Logger("e2e")
	end := time.Now()
	for i := range 40 {
		c.spans++
		opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(end.Add(-c.latency - time.Duration(i)*time.Millisecond))}
		if c.cluster != "" {
			opts = append(opts, trace.WithAttributes(attribute.String("cluster", c.cluster)))
		}
		_, span := tracer.Start(ctx, "POST /orders", opts...)
		if c.errorEvery > 0 && c.spans%c.errorEvery == 0 {
			span.SetStatus(codes.Error, "payment declined")
		}
		span.End(trace.WithTimestamp(end))
		var r otellog.Record
		r.SetTimestamp(end)
		switch {
		case c.errorLogEvery > 0 && c.spans%c.errorLogEvery == 0:
			r.SetSeverity(otellog.SeverityError)
			r.SetSeverityText("ERROR")
			r.SetBody(attribute.StringValue("payment provider timed out"))
		case c.spans%4 == 0:
			r.SetSeverity(otellog.SeverityInfo)
			r.SetBody(attribute.StringValue("order placed"))
		default:
			continue
		}
		logger.Emit(ctx, r)
	}
	c.cpu.Add(ctx, 0.25)
	c.mem.Record(ctx, int64(100<<20+c.spans<<10))
	// The same process metrics as a Prometheus client library exports them.
	now := time.Now().UnixMilli()
	remoteWrite(f.t, f.v.URL(), &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{Labels: dashPromLabels("process_cpu_seconds_total", c.service, c.version), Samples: []prompb.Sample{{Value: float64(c.spans) / 400, Timestamp: now}}},
		{Labels: dashPromLabels("process_resident_memory_bytes", c.service, c.version), Samples: []prompb.Sample{{Value: 80 << 20, Timestamp: now}}},
	}})
	for _, flush := range []func(context.Context) error{c.tp.ForceFlush, c.lp.ForceFlush, c.mp.ForceFlush} {
		if err := flush(ctx); err != nil {
			f.t.Fatalf("flush %s %s: %v", c.service, c.version, err)
		}
	}
}

// dashVersionsNow runs an instant query at the server's now (not a second
// earlier, as a query time in whole seconds would) and returns the value
// of each series by its version.
func dashVersionsNow(t *testing.T, base, q string) map[string]float64 {
	t.Helper()
	code, r := apiGet(t, base, "/api/v1/query", url.Values{"query": {q}})
	var res struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := json.Unmarshal(r.Data, &res); err != nil || code != http.StatusOK {
		t.Fatalf("query %s: %d %v %s", q, code, err, r.Error)
	}
	out := map[string]float64{}
	for _, s := range res.Result {
		out[s.Metric["version"]], _ = strconv.ParseFloat(s.Value[1].(string), 64)
	}
	return out
}

// dashRecordDeployment records a deployment with Vigil's API.
func dashRecordDeployment(t *testing.T, base, body string) {
	t.Helper()
	resp, err := http.Post(base+"/api/v1/deployments", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("record deployment %s: %s", body, resp.Status)
	}
}

type dashVerifyState struct {
	ID      string           `json:"id"`
	Final   bool             `json:"final"`
	Verdict *verdict.Verdict `json:"verdict"`
}

// dashVerify starts a verification with Vigil's API and returns its id.
func dashVerify(t *testing.T, base, body string) string {
	t.Helper()
	resp, err := http.Post(base+"/api/v1/verify", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Data dashVerifyState `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != http.StatusCreated || r.Data.ID == "" {
		t.Fatalf("verify %s: %s %v %+v", body, resp.Status, err, r)
	}
	return r.Data.ID
}

func dashVerifyStatus(t *testing.T, base, id string) dashVerifyState {
	t.Helper()
	code, r := apiGet(t, base, "/api/v1/verify/"+id, nil)
	var st dashVerifyState
	if err := json.Unmarshal(r.Data, &st); err != nil || code != http.StatusOK {
		t.Fatalf("verification %s: %d %v %s", id, code, err, r.Data)
	}
	return st
}

// dashTable runs a table panel's instant queries at now and merges their
// frames as the panel's merge transformation does.
func dashTable(t *testing.T, base string, d dashboards.Dashboard, title string, vars map[string]string) []map[string]any {
	t.Helper()
	now := time.Now()
	var frames []grafanatest.Frame
	for _, q := range dashboards.Queries(d) {
		if q.Kind != "panel" || q.Title != title {
			continue
		}
		res := instant(t, base, dashExpand(q.Expr, vars), now)
		var vec []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(res.Result, &vec); err != nil {
			t.Fatalf("%s %s: %v", title, q.RefID, err)
		}
		var samples []grafanatest.Sample
		for _, s := range vec {
			f, _ := strconv.ParseFloat(s.Value[1].(string), 64)
			samples = append(samples, grafanatest.Sample{Labels: s.Metric, Value: f})
		}
		frames = append(frames, grafanatest.TableFrame(q.RefID, now, samples))
	}
	if len(frames) < 2 {
		t.Fatalf("table %q: %d queries", title, len(frames))
	}
	return grafanatest.Merge(frames...)
}

// dashRange runs a range query and returns its series.
func dashRange(t *testing.T, base, expr string, start, end time.Time, step time.Duration) []grafanatest.Series {
	t.Helper()
	d := rangeQuery(t, base, expr, start, end, step)
	var res []struct {
		Metric map[string]string `json:"metric"`
		Values [][2]any          `json:"values"`
	}
	if err := json.Unmarshal(d.Result, &res); err != nil {
		t.Fatal(err)
	}
	var out []grafanatest.Series
	for _, r := range res {
		s := grafanatest.Series{Labels: r.Metric}
		for _, p := range r.Values {
			ts, _ := p[0].(float64)
			v, _ := strconv.ParseFloat(p[1].(string), 64)
			s.Points = append(s.Points, grafanatest.Point{T: int64(ts * 1000), V: v})
		}
		out = append(out, s)
	}
	return out
}

// dashCheckEveryVersion: a by-version panel shows every version of the
// service that served requests over the last minute, whether or not it
// had errors (a version without errors is at 0, not missing).
func dashCheckEveryVersion(t *testing.T, base, service string, q dashboards.Query, expr string) {
	t.Helper()
	want := vector(t, base, fmt.Sprintf(`group by (version) (rate(traces_span_metrics_calls_total{service=%q,span_kind="SPAN_KIND_SERVER"}[1m]) > 0)`, service), "version")
	got := vector(t, base, expr, "version")
	var missing []string
	for version := range want {
		if _, ok := got[version]; !ok {
			missing = append(missing, version)
		}
	}
	if len(missing) > 0 || len(want) < 2 {
		t.Errorf("%s %s of %s: versions %v, missing %v of those with traffic %v\n  %s", q.Title, q.RefID, service, got, missing, want, expr)
	}
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
