package otlp

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/vigilhq/vigil/collector"
	"github.com/vigilhq/vigil/collector/hotpath"
	"github.com/vigilhq/vigil/collector/spanmetrics"
	"github.com/vigilhq/vigil/internal/memstore"
	"github.com/vigilhq/vigil/storage"
)

// BenchmarkMetricsHTTP: OTLP/HTTP protobuf metric requests of 1000 data
// points (200 series x 5 points: sums, gauges) through decode, translation,
// the hot path and the TSDB WAL.
func BenchmarkMetricsHTTP(b *testing.B) {
	scfg := storage.DefaultConfig()
	scfg.Path = b.TempDir()
	store, err := storage.Open(scfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	pipe, err := hotpath.New(hotpath.DefaultConfig(), store, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	r, err := New(DefaultConfig(), Consumers{Metrics: pipe, Metadata: store.Metadata()}, collector.NewMetrics(nil), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	h := r.HTTPHandler("/v1")
	const series, points = 200, 5
	base := time.Now().Add(-time.Hour)
	request := func(i int) []byte {
		md := pmetric.NewMetrics()
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("service.name", "checkout")
		rm.Resource().Attributes().PutStr("service.version", "v2")
		ms := rm.ScopeMetrics().AppendEmpty().Metrics()
		for s := range series {
			m := ms.AppendEmpty()
			var dps pmetric.NumberDataPointSlice
			if s%2 == 0 {
				m.SetName("http.server.requests." + strconv.Itoa(s))
				sum := m.SetEmptySum()
				sum.SetIsMonotonic(true)
				sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
				dps = sum.DataPoints()
			} else {
				m.SetName("queue.depth." + strconv.Itoa(s))
				dps = m.SetEmptyGauge().DataPoints()
			}
			for p := range points {
				dp := dps.AppendEmpty()
				dp.Attributes().PutStr("route", "/api/v1/orders")
				dp.SetTimestamp(pcommon.NewTimestampFromTime(base.Add(time.Duration(i*points+p) * time.Millisecond)))
				dp.SetDoubleValue(float64(i*points + p))
			}
		}
		body, _ := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
		return body
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		body := request(i)
		b.StartTimer()
		req := httptest.NewRequest(http.MethodPost, "/v1/metrics", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentTypeProto)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	b.ReportMetric(float64(b.N*series*points)/b.Elapsed().Seconds(), "datapoints/s")
}

// BenchmarkTracesHTTP: OTLP/HTTP protobuf trace requests of 1000 spans
// decoded and turned into span metrics.
func BenchmarkTracesHTTP(b *testing.B) {
	g, err := spanmetrics.New(spanmetrics.DefaultConfig(), memstore.New(), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	r, err := New(DefaultConfig(), Consumers{Traces: g}, collector.NewMetrics(nil), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	h := r.HTTPHandler("/v1")
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "checkout")
	rs.Resource().Attributes().PutStr("service.version", "v2")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	start := pcommon.NewTimestampFromTime(time.Now())
	const n = 1000
	for i := range n {
		s := spans.AppendEmpty()
		s.SetName("GET /api/v1/orders/" + strconv.Itoa(i%20))
		s.SetKind(ptrace.SpanKindServer)
		s.SetTraceID(pcommon.TraceID([16]byte{byte(i), byte(i >> 8), 1}))
		s.SetSpanID(pcommon.SpanID([8]byte{byte(i), byte(i >> 8), 2}))
		s.SetStartTimestamp(start)
		s.SetEndTimestamp(start + pcommon.Timestamp(i*10000))
		s.Attributes().PutStr("http.request.method", "GET")
		s.Attributes().PutInt("http.response.status_code", 200)
	}
	body, _ := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		req := httptest.NewRequest(http.MethodPost, "/v1/traces", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentTypeProto)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "spans/s")
}
