package verdict

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	promModel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/internal/semconv"
	"github.com/vigilhq/vigil/query"
	"github.com/vigilhq/vigil/storage"
)

// traffic describes what a version of the test service serves.
type traffic struct {
	version   string
	from, to  time.Time
	perFlush  int     // requests per 5 s flush
	errRatio  float64 // share of requests in error
	latBucket int32   // native histogram bucket (schema 0) of the latency: -3 is (62.5ms, 125ms]
	logErrs   float64 // error log records per request
	// errorsFrom, when set, is when the version first fails: its error
	// series is written only from then on.
	errorsFrom time.Time
	// spanLabels are extra label pairs of the span metrics only (a span
	// dimension such as cluster that log metrics do not carry).
	spanLabels []string
}

// testDB is Vigil's real storage and PromQL engine.
type testDB struct {
	store  *storage.Storage
	engine *query.Engine
}

func newTestDB(t testing.TB) *testDB {
	t.Helper()
	cfg := storage.DefaultConfig()
	cfg.Path = t.TempDir()
	st, err := storage.Open(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	qc := query.DefaultConfig()
	e, err := query.NewEngine(qc, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &testDB{store: st, engine: e}
}

func (db *testDB) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]Point, error) {
	q, err := db.engine.NewRangeQuery(ctx, db.store, nil, expr, start, end, step)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return nil, res.Err
	}
	m, err := res.Matrix()
	if err != nil {
		return nil, err
	}
	var out []Point
	for _, s := range m {
		for _, p := range s.Floats {
			out = append(out, Point{T: p.T, V: p.F})
		}
	}
	return out, nil
}

// values runs a range query and returns its values.
func (db *testDB) values(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]float64, error) {
	ps, err := db.QueryRange(ctx, expr, start, end, step)
	return Values(ps), err
}

// write stores span and log metrics as the collector flushes them every 5 s:
// cumulative counters and a cumulative native histogram per version.
func (db *testDB) write(t testing.TB, service string, seed uint64, tr ...traffic) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	app := db.store.AppenderV2(context.Background())
	for _, v := range tr {
		base := []string{semconv.LabelService, service, semconv.LabelEnvironment, "production", semconv.LabelVersion, v.version,
			semconv.LabelSpanKind, semconv.KindServer, semconv.LabelSpanName, "POST /orders"}
		base = append(base, v.spanLabels...)
		ok := labels.FromStrings(append([]string{promModel.MetricNameLabel, semconv.SpanCalls, semconv.LabelStatusCode, "STATUS_CODE_UNSET"}, base...)...)
		bad := labels.FromStrings(append([]string{promModel.MetricNameLabel, semconv.SpanCalls, semconv.LabelStatusCode, semconv.StatusError}, base...)...)
		dur := labels.FromStrings(append([]string{promModel.MetricNameLabel, semconv.SpanDuration}, base...)...)
		logs := labels.FromStrings(promModel.MetricNameLabel, semconv.LogRecords, semconv.LabelService, service, semconv.LabelEnvironment, "production",
			semconv.LabelVersion, v.version, semconv.LabelSeverity, "error")
		var nOK, nBad, nLog float64
		var hc uint64
		for ts := v.from; !ts.After(v.to); ts = ts.Add(5 * time.Second) {
			n := v.perFlush/2 + rng.IntN(v.perFlush+1)
			for range n {
				if rng.Float64() < v.errRatio && !ts.Before(v.errorsFrom) {
					nBad++
				} else {
					nOK++
				}
				if rng.Float64() < v.logErrs {
					nLog++
				}
			}
			hc += uint64(n)
			h := &histogram.Histogram{Schema: 0, Count: hc, Sum: float64(hc) * 0.1, ZeroThreshold: 1e-128,
				PositiveSpans: []histogram.Span{{Offset: v.latBucket, Length: 1}}, PositiveBuckets: []int64{int64(hc)}}
			ms := ts.UnixMilli()
			for _, s := range []struct {
				ls labels.Labels
				v  float64
			}{{ok, nOK}, {bad, nBad}, {logs, nLog}} {
				if labels.Equal(s.ls, bad) && ts.Before(v.errorsFrom) {
					continue
				}
				if _, err := app.Append(0, s.ls, 0, ms, s.v, nil, nil, promstorage.AOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := app.Append(0, dur, 0, ms, 0, h, nil, promstorage.AOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

// alert writes a firing ALERTS series between from and to.
func (db *testDB) alert(t *testing.T, service, severity string, from, to time.Time) {
	t.Helper()
	app := db.store.AppenderV2(context.Background())
	ls := labels.FromStrings(promModel.MetricNameLabel, "ALERTS", "alertname", "CheckoutDown", "alertstate", "firing",
		semconv.LabelService, service, semconv.LabelEnvironment, "production", "severity", severity)
	for ts := from; !ts.After(to); ts = ts.Add(15 * time.Second) {
		if _, err := app.Append(0, ls, 0, ts.UnixMilli(), 1, nil, nil, promstorage.AOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}
