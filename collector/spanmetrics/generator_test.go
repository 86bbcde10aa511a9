package spanmetrics

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/value"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/vigilhq/vigil/internal/memstore"
)

type spanSpec struct {
	service, version string
	name             string
	kind             ptrace.SpanKind
	err              bool
	trace            byte
	id, parent       byte
	dur              time.Duration
}

func traces(specs ...spanSpec) ptrace.Traces {
	td := ptrace.NewTraces()
	start := pcommon.NewTimestampFromTime(time.Now())
	for _, s := range specs {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", s.service)
		rs.Resource().Attributes().PutStr("service.version", s.version)
		rs.Resource().Attributes().PutStr("deployment.environment.name", "prod")
		sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		sp.SetName(s.name)
		sp.SetKind(s.kind)
		sp.SetTraceID(pcommon.TraceID([16]byte{s.trace}))
		sp.SetSpanID(pcommon.SpanID([8]byte{s.id}))
		if s.parent != 0 {
			sp.SetParentSpanID(pcommon.SpanID([8]byte{s.parent}))
		}
		sp.SetStartTimestamp(start)
		sp.SetEndTimestamp(start + pcommon.Timestamp(s.dur))
		if s.err {
			sp.Status().SetCode(ptrace.StatusCodeError)
			sp.Status().SetMessage("upstream 503")
		}
	}
	return td
}

func TestSpanMetrics(t *testing.T) {
	out := memstore.New()
	cfg := DefaultConfig()
	cfg.Buckets = []float64{0.1, 1}
	g, err := New(cfg, out, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	// frontend v1 calls checkout v2 twice; the second call fails on the server.
	err = g.ConsumeTraces(context.Background(), traces(
		spanSpec{"frontend", "v1", "GET /cart", ptrace.SpanKindClient, false, 1, 1, 0, 50 * time.Millisecond},
		spanSpec{"checkout", "v2", "GET /cart", ptrace.SpanKindServer, false, 1, 2, 1, 40 * time.Millisecond},
		spanSpec{"frontend", "v1", "GET /cart", ptrace.SpanKindClient, false, 2, 3, 0, 2 * time.Second},
		spanSpec{"checkout", "v2", "GET /cart", ptrace.SpanKindServer, true, 2, 4, 3, 1500 * time.Millisecond},
	))
	if err != nil {
		t.Fatal(err)
	}
	g.Flush(time.Now())

	want := map[string]float64{
		`{__name__="traces_span_metrics_calls_total", environment="prod", service="checkout", span_kind="SPAN_KIND_SERVER", span_name="GET /cart", status_code="STATUS_CODE_ERROR", version="v2"}`:                        1,
		`{__name__="traces_span_metrics_calls_total", environment="prod", service="checkout", span_kind="SPAN_KIND_SERVER", span_name="GET /cart", status_code="STATUS_CODE_UNSET", version="v2"}`:                        1,
		`{__name__="traces_span_metrics_duration_seconds_bucket", environment="prod", le="0.1", service="checkout", span_kind="SPAN_KIND_SERVER", span_name="GET /cart", status_code="STATUS_CODE_UNSET", version="v2"}`:  1,
		`{__name__="traces_span_metrics_duration_seconds_bucket", environment="prod", le="1", service="checkout", span_kind="SPAN_KIND_SERVER", span_name="GET /cart", status_code="STATUS_CODE_ERROR", version="v2"}`:    0,
		`{__name__="traces_span_metrics_duration_seconds_bucket", environment="prod", le="+Inf", service="checkout", span_kind="SPAN_KIND_SERVER", span_name="GET /cart", status_code="STATUS_CODE_ERROR", version="v2"}`: 1,
		`{__name__="traces_span_metrics_duration_seconds_sum", environment="prod", service="checkout", span_kind="SPAN_KIND_SERVER", span_name="GET /cart", status_code="STATUS_CODE_ERROR", version="v2"}`:               1.5,
		`{__name__="traces_service_graph_request_total", client="frontend", client_version="v1", server="checkout", server_version="v2"}`:                                                                                 2,
		`{__name__="traces_service_graph_request_failed_total", client="frontend", client_version="v1", server="checkout", server_version="v2"}`:                                                                          1,
	}
	for series, v := range want {
		s, ok := out.Last(series)
		if !ok || s.V != v {
			t.Errorf("%s = %v (written %v), want %v", series, s.V, ok, v)
		}
	}
	native, ok := out.Last(`{__name__="traces_span_metrics_duration_seconds", environment="prod", service="frontend", span_kind="SPAN_KIND_CLIENT", span_name="GET /cart", status_code="STATUS_CODE_UNSET", version="v1"}`)
	if !ok || native.H == nil || native.H.Count != 2 || native.H.Sum < 2.04 || native.H.Sum > 2.06 {
		t.Errorf("native histogram = %+v, want 2 observations summing to 2.05s; series %v", native.H, out.Series())
	}
	if len(native.Exemplars) != 1 || native.Exemplars[0].Labels.Get("trace_id") == "" {
		t.Errorf("exemplars = %v, want the last span's trace id", native.Exemplars)
	}
	errs := g.ErrorTraces().Recent("checkout", "v2", time.Time{}, 0)
	if len(errs) != 1 || errs[0].Item.StatusMessage != "upstream 503" || errs[0].Item.DurationMs != 1500 {
		t.Errorf("error traces = %+v", errs)
	}

	// An exemplar is written once: the next flush has none.
	g.Flush(time.Now().Add(time.Second))
	if s, _ := out.Last(`{__name__="traces_span_metrics_calls_total", environment="prod", service="frontend", span_kind="SPAN_KIND_CLIENT", span_name="GET /cart", status_code="STATUS_CODE_UNSET", version="v1"}`); len(s.Exemplars) != 0 || s.V != 2 {
		t.Errorf("second flush: value %v exemplars %v", s.V, s.Exemplars)
	}
}

func TestSpanMetricsExpiry(t *testing.T) {
	out := memstore.New()
	cfg := DefaultConfig()
	g, err := New(cfg, out, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	g.ConsumeTraces(context.Background(), traces(spanSpec{"a", "v1", "op", ptrace.SpanKindServer, false, 1, 1, 0, time.Millisecond}))
	g.Flush(time.Now())
	g.Flush(time.Now().Add(time.Duration(cfg.Expiration) + time.Second))
	s, _ := out.Last(`{__name__="traces_span_metrics_calls_total", environment="prod", service="a", span_kind="SPAN_KIND_SERVER", span_name="op", status_code="STATUS_CODE_UNSET", version="v1"}`)
	if !value.IsStaleNaN(s.V) {
		t.Errorf("expired series last value %v, want a staleness marker", s.V)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, mut := range []func(*Config){
		func(c *Config) { c.FlushInterval = 0 },
		func(c *Config) { c.Buckets = []float64{1, 0.5} },
		func(c *Config) { c.MaxSeries = 0 },
		func(c *Config) { c.Expiration = c.FlushInterval },
		func(c *Config) { c.ServiceGraph.MaxPending = 0 },
		func(c *Config) { c.Dimensions = []string{""} },
	} {
		c := DefaultConfig()
		mut(&c)
		if c.Validate() == nil {
			t.Errorf("config %+v validated", c)
		}
	}
}

func BenchmarkConsumeTraces(b *testing.B) {
	for _, n := range []struct {
		name       string
		operations int
	}{{"10_operations", 10}, {"1000_operations", 1000}} {
		b.Run(n.name, func(b *testing.B) {
			g, err := New(DefaultConfig(), memstore.New(), slog.New(slog.DiscardHandler), nil)
			if err != nil {
				b.Fatal(err)
			}
			const batch = 1000
			td := ptrace.NewTraces()
			rs := td.ResourceSpans().AppendEmpty()
			rs.Resource().Attributes().PutStr("service.name", "checkout")
			rs.Resource().Attributes().PutStr("service.version", "v2")
			spans := rs.ScopeSpans().AppendEmpty().Spans()
			start := pcommon.NewTimestampFromTime(time.Now())
			for i := range batch {
				s := spans.AppendEmpty()
				s.SetName("op-" + string(rune('a'+i%n.operations%26)) + string(rune('a'+i%n.operations/26%26)))
				s.SetKind(ptrace.SpanKind(1 + i%3))
				s.SetTraceID(pcommon.TraceID([16]byte{byte(i), byte(i >> 8), 1}))
				s.SetSpanID(pcommon.SpanID([8]byte{byte(i), byte(i >> 8), 2}))
				s.SetParentSpanID(pcommon.SpanID([8]byte{byte(i), byte(i >> 8), 3}))
				s.SetStartTimestamp(start)
				s.SetEndTimestamp(start + pcommon.Timestamp(i*1000))
				if i%20 == 0 {
					s.Status().SetCode(ptrace.StatusCodeError)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				g.ConsumeTraces(context.Background(), td)
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "spans/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/span")
		})
	}
}

// TestSeriesStartFromZero: every series a generator writes for the first
// time — calls, the native histogram, the classic buckets, sum and count,
// service-graph edges — is preceded by a 0 (an empty histogram marked as a
// counter reset) one millisecond before its first value, and only then.
func TestSeriesStartFromZero(t *testing.T) {
	out := memstore.New()
	cfg := DefaultConfig()
	cfg.Buckets = []float64{0.1}
	g, err := New(cfg, out, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.ConsumeTraces(context.Background(), traces(
		spanSpec{"frontend", "v1", "GET /", ptrace.SpanKindClient, false, 1, 1, 0, 20 * time.Millisecond},
		spanSpec{"cart", "v1", "GET /", ptrace.SpanKindServer, false, 1, 2, 1, 10 * time.Millisecond},
	)); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	g.Flush(at)
	g.Flush(at.Add(time.Second))
	series := out.Series()
	if len(series) != 2*6+2 { // per span: calls, native, 2 buckets, sum, count; 2 edges
		t.Fatalf("%d series: %v", len(series), series)
	}
	for _, name := range series {
		ss := out.Samples(name)
		if len(ss) != 3 {
			t.Errorf("%s: %d samples, want the 0, the first value and the second", name, len(ss))
			continue
		}
		first := ss[0]
		if first.T != at.UnixMilli()-1 || first.V != 0 || (first.H != nil && (first.H.Count != 0 || first.H.CounterResetHint != histogram.CounterReset)) {
			t.Errorf("%s starts with %+v, want 0 at %d", name, first, at.UnixMilli()-1)
		}
		if ss[1].T != at.UnixMilli() || ss[2].T != at.Add(time.Second).UnixMilli() {
			t.Errorf("%s: then %d and %d, want the flush times", name, ss[1].T, ss[2].T)
		}
	}
}
