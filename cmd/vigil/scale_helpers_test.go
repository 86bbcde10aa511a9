package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/vigilhq/vigil/internal/peers"
	"github.com/vigilhq/vigil/internal/semconv"
)

// shopSent is what a shopLoad sent, to compare with what Vigil derived.
type shopSent struct {
	mu sync.Mutex
	// spans per service (every kind), error spans per service/version
	spans, errorSpans map[string]int
	// edges per "client>server"
	edges map[string]int
	// log records per service/severity
	logs map[string]int
	// failed are the trace IDs of the requests that failed.
	failed map[string]bool
	reqs   map[string]int // per checkout version
}

func newShopSent() *shopSent {
	return &shopSent{spans: map[string]int{}, errorSpans: map[string]int{}, edges: map[string]int{}, logs: map[string]int{}, failed: map[string]bool{}, reqs: map[string]int{}}
}

// shopLoad plays a small shop with the OpenTelemetry Go SDK: every request
// is one trace — frontend (server span, client span) calls checkout
// (server span, client span) which calls payments (server span); every
// third request frontend also calls cart. Checkout's failures set its
// server span's status to ERROR and log an error with the trace context;
// frontend logs an info line per request. Every span and log record is
// exported over OTLP/gRPC to each of the endpoints (e.g. a load-balancing
// tier and a single Vigil, to compare them).
type shopLoad struct {
	t         testing.TB
	endpoints []string
	sent      *shopSent
	tps       map[string]*sdktrace.TracerProvider
	lps       map[string]*sdklog.LoggerProvider
	n         int // requests so far
}

func newShopLoad(t testing.TB, sent *shopSent, endpoints ...string) *shopLoad {
	l := &shopLoad{t: t, endpoints: endpoints, sent: sent, tps: map[string]*sdktrace.TracerProvider{}, lps: map[string]*sdklog.LoggerProvider{}}
	t.Cleanup(l.close)
	return l
}

func (l *shopLoad) providers(service, version string) (trace.Tracer, otellog.Logger) {
	l.t.Helper()
	key := service + "/" + version
	tp, ok := l.tps[key]
	if !ok {
		res := resource.NewSchemaless(
			attribute.String("service.name", service),
			attribute.String("service.namespace", "shop"),
			attribute.String("service.version", version),
			attribute.String("deployment.environment.name", "production"),
		)
		ctx := context.Background()
		topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
		lopts := []sdklog.LoggerProviderOption{sdklog.WithResource(res)}
		for _, ep := range l.endpoints {
			texp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(ep), otlptracegrpc.WithInsecure())
			if err != nil {
				l.t.Fatal(err)
			}
			lexp, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(ep), otlploggrpc.WithInsecure())
			if err != nil {
				l.t.Fatal(err)
			}
			topts = append(topts, sdktrace.WithBatcher(texp, sdktrace.WithMaxExportBatchSize(256)))
			lopts = append(lopts, sdklog.WithProcessor(sdklog.NewBatchProcessor(lexp)))
		}
		tp = sdktrace.NewTracerProvider(topts...)
		l.tps[key] = tp
		l.lps[key] = sdklog.NewLoggerProvider(lopts...)
	}
	return tp.Tracer("shop"), l.lps[key].Logger("shop")
}

// round sends n requests, the checkout versions taking turns, and waits
// until every endpoint has acknowledged them. failEvery[v] makes every
// failEvery[v]-th request to checkout v fail (0: none).
func (l *shopLoad) round(n int, versions []string, failEvery map[string]int) {
	l.t.Helper()
	s := l.sent
	s.mu.Lock()
	front, frontLog := l.providers("frontend", "v1")
	pay, _ := l.providers("payments", "v1")
	cart, _ := l.providers("cart", "v1")
	bg := context.Background()
	for range n {
		l.n++
		v := versions[l.n%len(versions)]
		s.reqs[v]++
		checkout, checkoutLog := l.providers("checkout", v)
		fail := failEvery[v] > 0 && s.reqs[v]%failEvery[v] == 0

		ctx, root := front.Start(bg, "GET /checkout", trace.WithSpanKind(trace.SpanKindServer))
		cctx, call := front.Start(ctx, "POST /orders", trace.WithSpanKind(trace.SpanKindClient))
		sctx, srv := checkout.Start(cctx, "POST /orders", trace.WithSpanKind(trace.SpanKindServer))
		pctx, payCall := checkout.Start(sctx, "POST /pay", trace.WithSpanKind(trace.SpanKindClient))
		_, paySrv := pay.Start(pctx, "POST /pay", trace.WithSpanKind(trace.SpanKindServer))
		paySrv.End()
		payCall.End()
		s.spans["frontend"] += 2
		s.spans["checkout"] += 2
		s.spans["payments"]++
		s.edges["frontend>checkout"]++
		s.edges["checkout>payments"]++
		if fail {
			srv.SetStatus(codes.Error, "payment declined")
			s.errorSpans["checkout/"+v]++
			s.failed[srv.SpanContext().TraceID().String()] = true
			var r otellog.Record
			r.SetTimestamp(time.Now())
			r.SetSeverity(otellog.SeverityError)
			r.SetSeverityText("ERROR")
			r.SetBody(attribute.StringValue("payment declined"))
			checkoutLog.Emit(sctx, r)
			s.logs["checkout/error"]++
		}
		srv.End()
		call.End()
		if l.n%3 == 0 {
			cctx, call := front.Start(ctx, "GET /cart", trace.WithSpanKind(trace.SpanKindClient))
			_, srv := cart.Start(cctx, "GET /cart", trace.WithSpanKind(trace.SpanKindServer))
			srv.End()
			call.End()
			s.spans["frontend"]++
			s.spans["cart"]++
			s.edges["frontend>cart"]++
		}
		var r otellog.Record
		r.SetTimestamp(time.Now())
		r.SetSeverity(otellog.SeverityInfo)
		r.SetBody(attribute.StringValue("order placed"))
		frontLog.Emit(ctx, r)
		s.logs["frontend/info"]++
		root.End()
	}
	s.mu.Unlock()
	l.flush()
}

// flush waits until every span and log record was acknowledged.
func (l *shopLoad) flush() {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for key, tp := range l.tps {
		if err := tp.ForceFlush(ctx); err != nil {
			l.t.Fatalf("flush spans of %s: %v", key, err)
		}
		if err := l.lps[key].ForceFlush(ctx); err != nil {
			l.t.Fatalf("flush logs of %s: %v", key, err)
		}
	}
}

func (l *shopLoad) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for key, tp := range l.tps {
		_ = tp.Shutdown(ctx)
		_ = l.lps[key].Shutdown(ctx)
	}
}

// counterTotals reads every raw sample of the counters selector matches
// (over the last `window`) and returns, by the value of label by, what they
// counted: each series from zero, through its resets (a restarted replica
// starts again from zero). resets counts the resets by series.
func counterTotals(t testing.TB, base, selector string, by func(map[string]string) string, window time.Duration) (totals map[string]float64, resets map[string]int) {
	t.Helper()
	d := instant(t, base, fmt.Sprintf("%s[%s]", selector, window), time.Now())
	var res []struct {
		Metric map[string]string `json:"metric"`
		Values [][2]any          `json:"values"`
	}
	if err := json.Unmarshal(d.Result, &res); err != nil {
		t.Fatalf("%s on %s: %v: %s", selector, base, err, d.Result)
	}
	totals, resets = map[string]float64{}, map[string]int{}
	for _, s := range res {
		prev, total, n := 0.0, 0.0, 0
		for _, p := range s.Values {
			v, err := strconv.ParseFloat(p[1].(string), 64)
			if err != nil {
				t.Fatal(err)
			}
			if v < prev {
				n++
				total += v
			} else {
				total += v - prev
			}
			prev = v
		}
		totals[by(s.Metric)] += total
		if n > 0 {
			resets[seriesKey(s.Metric)] = n
		}
	}
	return totals, resets
}

func seriesKey(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := "{"
	for i, k := range keys {
		if i > 0 {
			out += ","
		}
		out += k + "=" + strconv.Quote(m[k])
	}
	return out + "}"
}

// shopTotals is what a Vigil (or a Prometheus-compatible backend) derived
// from a shopLoad, read exactly.
type shopTotals struct {
	spans, edges, logs map[string]float64
	resets             map[string]int
}

func readShopTotals(t testing.TB, base string) shopTotals {
	t.Helper()
	const window = 15 * time.Minute
	var tot shopTotals
	var r1, r2, r3 map[string]int
	tot.spans, r1 = counterTotals(t, base, semconv.SpanCalls, func(m map[string]string) string { return m[semconv.LabelService] }, window)
	tot.edges, r2 = counterTotals(t, base, semconv.ServiceGraphRequests, func(m map[string]string) string {
		return m[semconv.LabelClient] + ">" + m[semconv.LabelServer]
	}, window)
	tot.logs, r3 = counterTotals(t, base, semconv.LogRecords, func(m map[string]string) string {
		return m[semconv.LabelService] + "/" + m[semconv.LabelSeverity]
	}, window)
	tot.resets = map[string]int{}
	for _, m := range []map[string]int{r1, r2, r3} {
		for k, v := range m {
			tot.resets[k] = v
		}
	}
	return tot
}

// want is what s says was sent, as floats.
func (s *shopSent) want() shopTotals {
	s.mu.Lock()
	defer s.mu.Unlock()
	conv := func(m map[string]int) map[string]float64 {
		out := map[string]float64{}
		for k, v := range m {
			out[k] = float64(v)
		}
		return out
	}
	return shopTotals{spans: conv(s.spans), edges: conv(s.edges), logs: conv(s.logs)}
}

func equalCounts(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// writeConfig writes a vigil.yml into a new directory and returns its path.
func writeConfig(t testing.TB, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vigil.yml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// postDeployment records a deployment on a Vigil.
func postDeployment(t *testing.T, base, body string) {
	t.Helper()
	dashRecordDeployment(t, base, body)
}

// recentEvidence lists the error records a Vigil holds, with the replica
// each came from.
func recentEvidence(t *testing.T, base, path, service, version string) []struct {
	Collector string          `json:"collector"`
	Record    json.RawMessage `json:"record"`
} {
	t.Helper()
	code, r := apiGet(t, base, path, url.Values{"service": {service}, "version": {version}, "limit": {"1000"}})
	if code != 200 {
		t.Fatalf("GET %s: %d %s", path, code, r.Error)
	}
	var out []struct {
		Collector string          `json:"collector"`
		Record    json.RawMessage `json:"record"`
	}
	if err := json.Unmarshal(r.Data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

var _ = peers.FreeAddr
