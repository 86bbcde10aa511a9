package hotpath_test

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/vigilhq/vigil/collector"
	"github.com/vigilhq/vigil/collector/hotpath"
	"github.com/vigilhq/vigil/collector/logmetrics"
	"github.com/vigilhq/vigil/collector/spanmetrics"
	"github.com/vigilhq/vigil/collector/streamaggr"
	"github.com/vigilhq/vigil/internal/memstore"
	"github.com/vigilhq/vigil/internal/semconv"
	"github.com/vigilhq/vigil/storage"
)

// distinct is how many distinct label values each high-cardinality test
// feeds in. An unbounded map of series would hold about a kilobyte per
// value (labels, histogram, map entry): a gigabyte.
const distinct = 1_000_000

// maxHeapGrowth is what a bounded component may keep after the flood.
const maxHeapGrowth = 96 << 20

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func checkHeap(t *testing.T, before uint64, keep ...any) {
	t.Helper()
	after := heapInUse()
	runtime.KeepAlive(keep)
	growth := int64(after) - int64(before)
	t.Logf("heap grew by %.1f MiB after %d distinct values", float64(growth)/(1<<20), distinct)
	if growth > maxHeapGrowth {
		t.Errorf("heap grew by %d MiB, more than the %d MiB a bounded component may keep", growth>>20, maxHeapGrowth>>20)
	}
}

// TestBoundedSpanMetrics: a million distinct span names (an unbounded
// operation name such as a raw URL path) from a million traces. Series stay
// at max_series, the excess is counted on the service's _other_ series so
// no call is lost from the totals, and pending service-graph halves and
// the error-trace rings stay within their limits.
func TestBoundedSpanMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("floods a million spans")
	}
	out := memstore.New()
	cfg := spanmetrics.DefaultConfig()
	cfg.MaxSeries = 1000
	cfg.ServiceGraph.MaxPending = 5000
	reg := prometheus.NewRegistry()
	g, err := spanmetrics.New(cfg, out, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	before := heapInUse()
	const batch = 10_000
	start := pcommon.NewTimestampFromTime(time.Now())
	for b := 0; b < distinct/batch; b++ {
		td := ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", "api")
		rs.Resource().Attributes().PutStr("service.version", "v1")
		spans := rs.ScopeSpans().AppendEmpty().Spans()
		spans.EnsureCapacity(batch)
		for i := range batch {
			n := b*batch + i
			s := spans.AppendEmpty()
			s.SetName("GET /users/" + strconv.Itoa(n))
			s.SetKind(ptrace.SpanKindClient) // waits for a server half that never comes
			s.SetTraceID(pcommon.TraceID([16]byte{byte(n), byte(n >> 8), byte(n >> 16), 1}))
			s.SetSpanID(pcommon.SpanID([8]byte{byte(n), byte(n >> 8), byte(n >> 16), 2}))
			s.SetStartTimestamp(start)
			s.SetEndTimestamp(start + 1e6)
			if n%10 == 0 {
				s.Status().SetCode(ptrace.StatusCodeError)
			}
		}
		if err := g.ConsumeTraces(context.Background(), td); err != nil {
			t.Fatal(err)
		}
	}
	g.Flush(time.Now())
	checkHeap(t, before, g)

	calls := out.Select(semconv.SpanCalls)
	if len(calls) > cfg.MaxSeries+cfg.MaxSeries/10+1 {
		t.Errorf("%d call series, want at most max_series (%d) plus overflow", len(calls), cfg.MaxSeries)
	}
	var total float64
	var other bool
	for k, s := range calls {
		total += s.V
		if strings.Contains(k, `span_name="_other_"`) {
			other = true
		}
	}
	if total != distinct {
		t.Errorf("calls_total sums to %v, want %d: overflow must keep the count", total, distinct)
	}
	if !other {
		t.Error("no _other_ overflow series written")
	}
	if n := len(g.ErrorTraces().Recent("api", "v1", time.Time{}, 0)); n != cfg.ErrorTraces.PerService {
		t.Errorf("error-trace ring holds %d, want per_service_version %d", n, cfg.ErrorTraces.PerService)
	}
	if got := gathered(t, reg, "vigil_span_metrics_overflow_spans_total"); got != distinct-float64(cfg.MaxSeries) {
		t.Errorf("overflow counter %v, want %d", got, distinct-cfg.MaxSeries)
	}
}

// TestBoundedLogMetrics: log records from a million distinct services (a
// misconfigured service.name carrying a request id).
func TestBoundedLogMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("floods a million records")
	}
	out := memstore.New()
	cfg := logmetrics.DefaultConfig()
	cfg.MaxSeries = 2000
	reg := prometheus.NewRegistry()
	g, err := logmetrics.New(cfg, out, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	before := heapInUse()
	for n := range distinct {
		g.Observe(logmetrics.Record{Identity: collector.Identity{Service: "svc-" + strconv.Itoa(n), Version: "v1"}, Severity: semconv.SeverityError, Body: "boom"})
	}
	g.Flush(time.Now())
	checkHeap(t, before, g)
	if n := len(out.Select(semconv.LogRecords)); n != cfg.MaxSeries {
		t.Errorf("%d log_records_total series, want max_series %d", n, cfg.MaxSeries)
	}
	if got := gathered(t, reg, "vigil_log_metrics_dropped_records_total"); got != distinct-float64(cfg.MaxSeries) {
		t.Errorf("dropped counter %v, want %d", got, distinct-cfg.MaxSeries)
	}
	if n := g.ErrorLogs().Len(); n > cfg.ErrorLogs.MaxKeys {
		t.Errorf("error-log rings hold %d service/versions, more than %d", n, cfg.ErrorLogs.MaxKeys)
	}
}

// TestBoundedStorageSeries: a million distinct series through the hot path
// into the TSDB with max_series 10000: storage holds 10000, every other
// new series is refused with ErrSeriesLimit, known series keep appending.
func TestBoundedStorageSeries(t *testing.T) {
	if testing.Short() {
		t.Skip("floods a million series")
	}
	scfg := storage.DefaultConfig()
	scfg.Path = t.TempDir()
	store, err := storage.Open(scfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cfg := hotpath.DefaultConfig()
	cfg.MaxSeries = 10_000
	cfg.StreamAggregation = []streamaggr.RuleConfig{{
		Match: streamaggr.Selectors{"requests_total"}, Interval: model.Duration(time.Minute),
		Without: []string{"request_id"}, Outputs: []string{"count_series"}, MaxSeries: 100,
	}}
	p, err := hotpath.New(cfg, store, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	before := heapInUse()
	ts := time.Now().UnixMilli()
	var refused int
	for b := 0; b < distinct/10_000; b++ {
		app := p.AppenderV2(context.Background())
		for i := range 10_000 {
			ls := labels.FromStrings("__name__", "requests_total", "request_id", strconv.Itoa(b*10_000+i))
			if _, err := app.Append(0, ls, 0, ts, 1, nil, nil, storageOpts); err != nil {
				if !errors.Is(err, collector.ErrSeriesLimit) {
					t.Fatal(err)
				}
				refused++
			}
		}
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	checkHeap(t, before, p)
	if n := store.NumSeries(); n != uint64(cfg.MaxSeries) {
		t.Errorf("storage holds %d series, want max_series %d", n, cfg.MaxSeries)
	}
	if refused != distinct-cfg.MaxSeries {
		t.Errorf("%d samples refused, want %d", refused, distinct-cfg.MaxSeries)
	}
	// A series storage already holds still takes samples at the limit.
	app := p.AppenderV2(context.Background())
	if _, err := app.Append(0, labels.FromStrings("__name__", "requests_total", "request_id", "7"), 0, ts+1000, 2, nil, nil, storageOpts); err != nil {
		t.Errorf("known series refused at the limit: %v", err)
	}
	app.Commit()
}

var storageOpts = promstorage.AOptions{}

// gathered reads the value of a counter without labels from reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var v float64
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue()
			}
			return v
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
