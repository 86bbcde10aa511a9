package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/promql/parser"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/vigilhq/vigil/collector/loki"
	"github.com/vigilhq/vigil/internal/peers"
	"github.com/vigilhq/vigil/internal/semconv"
)

// fastFlushConfig makes span and log metrics flush every second so tests
// see derived series quickly.
const fastFlushConfig = `
span_metrics:
  flush_interval: 1s
  service_graph:
    wait: 2s
log_metrics:
  flush_interval: 1s
`

func startCollectorVigil(t *testing.T, extraConfig string) *peers.Vigil {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "vigil.yml")
	if err := os.WriteFile(cfg, []byte(fastFlushConfig+extraConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	return peers.StartVigil(t, filepath.Join(dir, "data"), "--config", cfg)
}

// vector runs an instant query and returns the value of each series keyed
// by the value of label (or the whole label set when label is "").
func vector(t *testing.T, base, q, label string) map[string]float64 {
	t.Helper()
	d := instant(t, base, q, time.Now())
	var res []struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
	}
	if err := json.Unmarshal(d.Result, &res); err != nil {
		t.Fatalf("query %s: decode %s: %v", q, d.Result, err)
	}
	out := map[string]float64{}
	for _, s := range res {
		v, err := strconv.ParseFloat(s.Value[1].(string), 64)
		if err != nil {
			t.Fatal(err)
		}
		key := s.Metric[label]
		if label == "" {
			key = fmt.Sprint(s.Metric)
		}
		out[key] = v
	}
	return out
}

// waitValue waits until the one-series query q returns want.
func waitValue(t *testing.T, base, q string, want float64) {
	t.Helper()
	var last map[string]float64
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		last = vector(t, base, q, "")
		if len(last) == 1 {
			for _, v := range last {
				if v == want {
					return
				}
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("query %s: got %v, want a single series with value %v", q, last, want)
}

type recentRecord struct {
	Service string          `json:"service"`
	Version string          `json:"version"`
	Record  json.RawMessage `json:"record"`
}

func recent(t *testing.T, base, path string, params url.Values) []recentRecord {
	t.Helper()
	code, r := apiGet(t, base, path, params)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, code, r.Error)
	}
	var recs []recentRecord
	if err := json.Unmarshal(r.Data, &recs); err != nil {
		t.Fatal(err)
	}
	return recs
}

func otelResource(service, version string) *resource.Resource {
	return resource.NewSchemaless(
		attribute.String("service.name", service),
		attribute.String("service.namespace", "shop"),
		attribute.String("service.version", version),
		attribute.String("deployment.environment.name", "production"),
		attribute.String("service.instance.id", service+"-0"),
	)
}

// TestOTLPWithOTelSDK sends traces, metrics and logs with the OpenTelemetry
// Go SDK's own OTLP exporters, over gRPC and over HTTP, and checks the
// series Vigil derives from them exactly.
func TestOTLPWithOTelSDK(t *testing.T) {
	v := startCollectorVigil(t, "")
	base := v.URL()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	for _, transport := range []string{"grpc", "http"} {
		t.Run(transport, func(t *testing.T) {
			service := "checkout-" + transport
			res := otelResource(service, "v2")

			// Traces: 100 server spans, 7 of them errors.
			var texp sdktrace.SpanExporter
			var err error
			if transport == "grpc" {
				texp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(v.OTLPGRPC), otlptracegrpc.WithInsecure())
			} else {
				texp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(v.OTLPHTTP), otlptracehttp.WithInsecure())
			}
			if err != nil {
				t.Fatal(err)
			}
			tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithBatcher(texp))
			tracer := tp.Tracer("e2e")
			for i := range 100 {
				_, span := tracer.Start(ctx, "POST /orders", trace.WithSpanKind(trace.SpanKindServer))
				if i%15 == 0 { // 0, 15, ..., 90: seven errors
					span.SetStatus(codes.Error, "payment declined")
				}
				span.End()
			}
			if err := tp.Shutdown(ctx); err != nil {
				t.Fatalf("flush spans: %v", err)
			}

			// Metrics: a counter, a histogram in seconds, a gauge.
			var mexp sdkmetric.Exporter
			if transport == "grpc" {
				mexp, err = otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(v.OTLPGRPC), otlpmetricgrpc.WithInsecure())
			} else {
				mexp, err = otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpoint(v.OTLPHTTP), otlpmetrichttp.WithInsecure())
			}
			if err != nil {
				t.Fatal(err)
			}
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp, sdkmetric.WithInterval(time.Hour))))
			meter := mp.Meter("e2e")
			orders, _ := meter.Int64Counter("shop.orders", metric.WithUnit("{order}"))
			latency, _ := meter.Float64Histogram("shop.checkout.duration", metric.WithUnit("s"))
			orders.Add(ctx, 42)
			for i := range 10 {
				latency.Record(ctx, float64(i)/10)
			}
			if err := mp.Shutdown(ctx); err != nil {
				t.Fatalf("flush metrics: %v", err)
			}

			// Logs: 3 errors and 7 infos.
			var lexp sdklog.Exporter
			if transport == "grpc" {
				lexp, err = otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(v.OTLPGRPC), otlploggrpc.WithInsecure())
			} else {
				lexp, err = otlploghttp.New(ctx, otlploghttp.WithEndpoint(v.OTLPHTTP), otlploghttp.WithInsecure())
			}
			if err != nil {
				t.Fatal(err)
			}
			lp := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(sdklog.NewBatchProcessor(lexp)))
			logger := lp.Logger("e2e")
			for i := range 10 {
				var r otellog.Record
				r.SetTimestamp(time.Now())
				if i < 3 {
					r.SetSeverity(otellog.SeverityError)
					r.SetSeverityText("ERROR")
					r.SetBody(attribute.StringValue(fmt.Sprintf("payment provider timeout #%d", i)))
				} else {
					r.SetSeverity(otellog.SeverityInfo)
					r.SetBody(attribute.StringValue("order placed"))
				}
				logger.Emit(ctx, r)
			}
			if err := lp.Shutdown(ctx); err != nil {
				t.Fatalf("flush logs: %v", err)
			}

			sel := fmt.Sprintf(`service=%q,version="v2",namespace="shop",environment="production"`, service)
			waitValue(t, base, fmt.Sprintf(`sum(%s{%s,span_kind="SPAN_KIND_SERVER"})`, semconv.SpanCalls, sel), 100)
			waitValue(t, base, fmt.Sprintf(`sum(%s{%s,status_code=%q})`, semconv.SpanCalls, sel, semconv.StatusError), 7)
			waitValue(t, base, fmt.Sprintf(`sum(histogram_count(%s{%s}))`, semconv.SpanDuration, sel), 100)
			waitValue(t, base, fmt.Sprintf(`sum(%s{%s,severity="error"})`, semconv.LogRecords, sel), 3)
			waitValue(t, base, fmt.Sprintf(`sum(%s{%s,severity="info"})`, semconv.LogRecords, sel), 7)

			// OTLP metrics translated as Prometheus's OTLP receiver does:
			// unit and _total suffixes, job from namespace/name, instance
			// from service.instance.id, version promoted from service.version.
			job := "shop/" + service
			waitValue(t, base, fmt.Sprintf(`shop_orders_total{job=%q,instance=%q,version="v2"}`, job, service+"-0"), 42)
			waitValue(t, base, fmt.Sprintf(`shop_checkout_duration_seconds_count{job=%q}`, job), 10)
			waitValue(t, base, fmt.Sprintf(`count(target_info{job=%q,deployment_environment_name="production"})`, job), 1)

			logs := recent(t, base, "/api/v1/logs/recent", url.Values{"service": {service}, "version": {"v2"}, "limit": {"50"}})
			if len(logs) != 3 {
				t.Fatalf("recent error logs = %d, want 3", len(logs))
			}
			if !strings.Contains(string(logs[0].Record), "payment provider timeout") {
				t.Errorf("error log record = %s", logs[0].Record)
			}
			traces := recent(t, base, "/api/v1/traces/recent", url.Values{"service": {service}, "version": {"v2"}, "limit": {"50"}})
			if len(traces) != 7 {
				t.Fatalf("recent error traces = %d, want 7", len(traces))
			}
			var tr struct {
				TraceID, SpanName, StatusMessage string
			}
			if err := json.Unmarshal(traces[0].Record, &tr); err != nil {
				t.Fatal(err)
			}
			if len(tr.TraceID) != 32 || tr.SpanName != "POST /orders" || tr.StatusMessage != "payment declined" {
				t.Errorf("error trace evidence = %+v", tr)
			}
		})
	}
}

// TestTelemetrygen drives Vigil with the OpenTelemetry Collector's own load
// generator over both transports; every span, log record and data point
// arrives.
func TestTelemetrygen(t *testing.T) {
	bin := peers.GoBinary(t, "telemetrygen")
	v := startCollectorVigil(t, "")
	base := v.URL()

	run := func(t *testing.T, args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("telemetrygen %v: %v\n%s", args, err, out)
		}
	}
	collisions := 0
	for _, transport := range []string{"grpc", "http"} {
		t.Run(transport, func(t *testing.T) {
			service := "tg-" + transport
			common := []string{"--otlp-insecure", "--service", service, "--otlp-attributes", `service.version="v9"`}
			if transport == "grpc" {
				common = append(common, "--otlp-endpoint", v.OTLPGRPC)
			} else {
				common = append(common, "--otlp-http", "--otlp-endpoint", v.OTLPHTTP)
			}
			// Each telemetrygen trace is a client span and its server span;
			// counts are per worker.
			run(t, append([]string{"traces", "--traces", "250", "--workers", "2", "--rate", "0"}, common...)...)
			run(t, append([]string{"logs", "--logs", "300", "--workers", "2", "--rate", "0", "--severity-text", "Error", "--severity-number", "17"}, common...)...)
			// One point of each metric type.
			for _, typ := range []string{"Gauge", "Sum", "Histogram", "ExponentialHistogram"} {
				run(t, append([]string{"metrics", "--metrics", "1", "--metric-type", typ, "--otlp-metric-name", "tg_" + strings.ToLower(typ)}, common...)...)
			}
			// Four points of a cumulative sum. telemetrygen reads the clock
			// before its rate limiter waits, so its first two points usually
			// share a millisecond (not always on a loaded machine); the TSDB
			// keeps milliseconds, so the second cannot be stored. Vigil then
			// says so in an OTLP partial success (which telemetrygen treats
			// as fatal) rather than drop it silently: every point is stored
			// or reported.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, append([]string{"metrics", "--metrics", "4", "--metric-type", "Sum", "--otlp-metric-name", "tg_requests"}, common...)...).CombinedOutput()
			stored := 4
			switch {
			case err == nil:
				t.Logf("telemetrygen's points did not collide this time: all 4 stored")
			case strings.Contains(string(out), "OTLP partial success: duplicate_timestamp: 1"):
				stored, collisions = 3, collisions+1
			default:
				t.Errorf("telemetrygen metrics: err %v, output:\n%s", err, out)
			}

			sel := fmt.Sprintf(`service=%q,version="v9"`, service)
			waitValue(t, base, fmt.Sprintf(`sum(%s{%s})`, semconv.SpanCalls, sel), 1000)
			waitValue(t, base, fmt.Sprintf(`sum(%s{%s,span_kind="SPAN_KIND_SERVER"})`, semconv.SpanCalls, sel), 500)
			waitValue(t, base, fmt.Sprintf(`sum(%s{%s,severity="error"})`, semconv.LogRecords, sel), 600)
			waitValue(t, base, fmt.Sprintf(`sum(%s{client=%q,server=%q})`, semconv.ServiceGraphRequests, service, service), 500)
			job := fmt.Sprintf(`job=%q,version="v9"`, service)
			waitValue(t, base, fmt.Sprintf(`tg_gauge{%s}`, job), 0)
			waitValue(t, base, fmt.Sprintf(`tg_sum_total{%s}`, job), 0)
			waitValue(t, base, fmt.Sprintf(`count(tg_histogram_bucket{%s})`, job), 16) // telemetrygen's 15 bounds and +Inf
			waitValue(t, base, fmt.Sprintf(`count(histogram_count(tg_exponentialhistogram{%s}) > 0)`, job), 1)
			// Of the sum's 0,1,2,3 the storable points arrive.
			waitValue(t, base, fmt.Sprintf(`max(tg_requests_total{job=%q})`, service), 3)
			waitValue(t, base, fmt.Sprintf(`count_over_time(tg_requests_total{job=%q}[10m])`, service), float64(stored))
		})
	}
	if got := selfMetric(t, base, `vigil_ingest_rejected_samples_total{reason="duplicate_timestamp",receiver="otlp"}`); got != float64(collisions) {
		t.Errorf("duplicate-timestamp rejections = %v, want %d (one per telemetrygen run whose points collided)", got, collisions)
	}
}

// selfMetric reads one sample of Vigil's own /metrics.
func selfMetric(t testing.TB, base, series string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, series+" ") {
			v, err := strconv.ParseFloat(strings.TrimPrefix(line, series+" "), 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	return 0
}

// TestLokiPush pushes logs the way Promtail (snappy protobuf) and a JSON
// client do, and finds them in the log metrics and the recent-errors ring.
func TestLokiPush(t *testing.T) {
	v := startCollectorVigil(t, "")
	base := v.URL()
	now := time.Now()
	lbl := func(s string) labels.Labels {
		ls, err := parser.NewParser(parser.Options{}).ParseMetric(s)
		if err != nil {
			t.Fatal(err)
		}
		return ls
	}
	body := loki.EncodeProto([]loki.Stream{
		{Labels: lbl(`{service="payments", version="v4", namespace="shop", level="error"}`), Entries: []loki.Entry{
			{Time: now, Line: "card processor unreachable", Metadata: map[string]string{"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}},
			{Time: now.Add(time.Millisecond), Line: "card processor unreachable (retry)"},
		}},
		{Labels: lbl(`{service="payments", version="v4", namespace="shop"}`), Entries: []loki.Entry{
			{Time: now, Line: `level=info msg="charged" amount=12`},
			{Time: now, Line: `level=warn msg="slow charge"`},
		}},
	})
	resp, err := http.Post(base+"/loki/api/v1/push", "application/x-protobuf", bytes.NewReader(snappy.Encode(nil, body)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("protobuf push: %d", resp.StatusCode)
	}
	jsonBody := fmt.Sprintf(`{"streams":[{"stream":{"service_name":"payments","version":"v4","namespace":"shop"},"values":[["%d","{\"level\":\"error\",\"msg\":\"ledger write failed\"}"]]}]}`, now.UnixNano())
	resp, err = http.Post(base+"/loki/api/v1/push", "application/json", strings.NewReader(jsonBody))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("JSON push: %d", resp.StatusCode)
	}
	// A broken body is refused with the decoder's reason.
	resp, err = http.Post(base+"/loki/api/v1/push", "application/json", strings.NewReader(`{"streams":[{"values":[["x"]]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(msg), "values[0]") {
		t.Fatalf("bad JSON push: %d %s", resp.StatusCode, msg)
	}

	sel := `service="payments",version="v4",namespace="shop"`
	waitValue(t, base, fmt.Sprintf(`sum(%s{%s,severity="error"})`, semconv.LogRecords, sel), 3)
	waitValue(t, base, fmt.Sprintf(`sum(%s{%s,severity="info"})`, semconv.LogRecords, sel), 1)
	waitValue(t, base, fmt.Sprintf(`sum(%s{%s,severity="warn"})`, semconv.LogRecords, sel), 1)
	logs := recent(t, base, "/api/v1/logs/recent", url.Values{"service": {"payments"}, "version": {"v4"}})
	if len(logs) != 3 {
		t.Fatalf("recent error logs = %d, want 3", len(logs))
	}
	var all string
	for _, l := range logs {
		all += string(l.Record)
	}
	if !contains(all, "ledger write failed", "card processor unreachable", "4bf92f3577b34da6a3ce929d0e0e4736") {
		t.Errorf("recent error logs miss lines: %s", all)
	}
}

// TestStreamAggregation configures a rule like vmagent's and checks its
// output series over remote_write, with the raw input dropped.
func TestStreamAggregation(t *testing.T) {
	v := startCollectorVigil(t, `
stream_aggregation:
  - match: 'http_requests_total'
    interval: 1s
    without: [instance, pod]
    outputs: [total, count_series, max]
    drop_input: true
`)
	base := v.URL()
	now := time.Now()
	var ts []prompb.TimeSeries
	for i, pod := range []string{"a", "b", "c"} {
		ts = append(ts, prompb.TimeSeries{
			Labels:  []prompb.Label{{Name: "__name__", Value: "http_requests_total"}, {Name: "code", Value: "200"}, {Name: "instance", Value: "10.0.0." + pod}, {Name: "pod", Value: pod}, {Name: "version", Value: "v2"}},
			Samples: []prompb.Sample{{Value: float64(10 * (i + 1)), Timestamp: now.UnixMilli()}},
		})
	}
	remoteWrite(t, base, &prompb.WriteRequest{Timeseries: ts})
	// One second later every pod's counter has risen by 5.
	time.Sleep(1100 * time.Millisecond)
	for i := range ts {
		ts[i].Samples[0] = prompb.Sample{Value: ts[i].Samples[0].Value + 5, Timestamp: now.Add(time.Second).UnixMilli()}
	}
	remoteWrite(t, base, &prompb.WriteRequest{Timeseries: ts})

	out := `http_requests_total:1s_without_instance_pod`
	waitValue(t, base, fmt.Sprintf(`max_over_time(%s_total{code="200",version="v2"}[1m])`, out), 15)
	waitValue(t, base, fmt.Sprintf(`max_over_time(%s_count_series{code="200",version="v2"}[1m])`, out), 3)
	waitValue(t, base, fmt.Sprintf(`max_over_time(%s_max{code="200",version="v2"}[1m])`, out), 35)
	if got := vector(t, base, `count(http_requests_total)`, ""); len(got) != 0 {
		t.Errorf("raw input stored despite drop_input: %v", got)
	}
}
