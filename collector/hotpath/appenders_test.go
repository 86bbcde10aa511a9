package hotpath

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/collector"
	"github.com/vigilhq/vigil/storage"
)

var testNow = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func newTestPipeline(t *testing.T) (*Pipeline, *storage.Storage) {
	t.Helper()
	scfg := storage.DefaultConfig()
	scfg.Path = t.TempDir()
	store, err := storage.Open(scfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	p, err := New(DefaultConfig(), store, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.now = func() time.Time { return testNow }
	return p, store
}

// step is one append; at is relative to the pipeline's clock.
type step struct {
	series string // "name" or "name,label=value"
	byRef  bool   // append by the reference an earlier step got for the series
	at     time.Duration
	v      float64
	h      *histogram.Histogram
	want   string // reason the sample is refused for, "" when stored
}

func seriesLabels(s string) labels.Labels {
	name, rest, _ := strings.Cut(s, ",")
	kv := []string{model.MetricNameLabel, name}
	if rest != "" {
		for _, p := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(p, "=")
			kv = append(kv, k, v)
		}
	}
	return labels.FromStrings(kv...)
}

func hist(count uint64) *histogram.Histogram {
	return &histogram.Histogram{Count: count, Sum: float64(count), Schema: 0, ZeroThreshold: 0.001, ZeroCount: count,
		PositiveSpans: []histogram.Span{}, PositiveBuckets: []int64{}}
}

// TestIngestAppenders: the checks every receiver's samples pass, in one
// transaction: conflicts within it, the time window, the label limits.
func TestIngestAppenders(t *testing.T) {
	wide := "wide"
	for i := range 30 {
		wide += fmt.Sprintf(",l%02d=v", i)
	}
	for _, tc := range []struct {
		name  string
		steps []step
		kept  map[string][]float64 // committed float samples by series
	}{
		{"in order", []step{{series: "a", v: 1}, {series: "a", at: time.Second, v: 2}}, map[string][]float64{"a": {1, 2}}},
		{"another value at the same time", []step{{series: "a", v: 1}, {series: "a", v: 2, want: collector.ReasonDuplicate}}, map[string][]float64{"a": {1}}},
		{"an exact repeat", []step{{series: "a", v: 1}, {series: "a", v: 1}}, map[string][]float64{"a": {1}}},
		{"NaN repeated bit for bit", []step{{series: "a", v: math.NaN()}, {series: "a", v: math.NaN()}}, nil},
		{"out of order", []step{{series: "a", at: time.Second, v: 1}, {series: "a", v: 2, want: collector.ReasonOutOfOrder}}, map[string][]float64{"a": {1}}},
		{"by reference after labels", []step{{series: "a", v: 1}, {series: "a", byRef: true, v: 2, want: collector.ReasonDuplicate}}, map[string][]float64{"a": {1}}},
		{"by labels after a reference moved on", []step{
			{series: "a", v: 1}, {series: "a", byRef: true, at: time.Second, v: 2}, {series: "a", v: 3, want: collector.ReasonOutOfOrder},
		}, map[string][]float64{"a": {1, 2}}},
		{"series do not interfere", []step{{series: "a", v: 1}, {series: "a,x=1", v: 2}, {series: "b", v: 3}}, map[string][]float64{"a": {1}, "a,x=1": {2}, "b": {3}}},
		{"too old", []step{{series: "a", at: -2*time.Hour - time.Second, v: 1, want: collector.ReasonTooOld}, {series: "a", at: -2 * time.Hour, v: 2}}, map[string][]float64{"a": {2}}},
		{"too far in the future", []step{{series: "a", at: 10*time.Minute + time.Millisecond, v: 1, want: collector.ReasonFuture}, {series: "a", at: 10 * time.Minute, v: 2}}, map[string][]float64{"a": {2}}},
		{"30 labels and __name__", []step{{series: wide, v: 1, want: collector.ReasonMaxLabelNames}}, nil},
		{"29 labels and __name__", []step{{series: strings.TrimSuffix(wide, ",l29=v"), v: 1}}, map[string][]float64{strings.TrimSuffix(wide, ",l29=v"): {1}}},
		{"label value too long", []step{{series: "a,path=" + strings.Repeat("x", 2049), v: 1, want: collector.ReasonLabelValueTooLong}}, nil},
		{"label name too long", []step{{series: "a," + strings.Repeat("n", 1025) + "=v", v: 1, want: collector.ReasonLabelNameTooLong}}, nil},
		{"histograms", []step{
			{series: "h", h: hist(1)}, {series: "h", h: hist(1)}, {series: "h", h: hist(2), want: collector.ReasonDuplicate},
			{series: "h", at: -time.Second, h: hist(3), want: collector.ReasonOutOfOrder},
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, store := newTestPipeline(t)
			app := p.AppenderV2(context.Background())
			refs := map[string]promstorage.SeriesRef{}
			for i, s := range tc.steps {
				ls, ref := seriesLabels(s.series), promstorage.SeriesRef(0)
				if s.byRef {
					ls, ref = labels.EmptyLabels(), refs[s.series]
				}
				t0 := testNow.Add(s.at).UnixMilli()
				r, err := app.Append(ref, ls, 0, t0, s.v, s.h, nil, promstorage.AOptions{})
				if got := collector.ReasonOf(err); got != s.want || (err != nil && got == "") {
					t.Fatalf("step %d (%s @%s): got %v (reason %q), want %q", i, s.series, s.at, err, got, s.want)
				}
				if r != 0 {
					refs[s.series] = r
				}
			}
			if err := app.Commit(); err != nil {
				t.Fatal(err)
			}
			for series, want := range tc.kept {
				if got := committed(t, store, seriesLabels(series)); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s holds %v, want %v", series, got, want)
				}
			}
		})
	}
}

// TestIngestAppendersAcrossRequests: a conflict with a committed sample is
// the head's to find, and the hot path's reasons agree with its.
func TestIngestAppendersAcrossRequests(t *testing.T) {
	p, _ := newTestPipeline(t)
	ls := seriesLabels("a")
	t0 := testNow.UnixMilli()
	app := p.AppenderV2(context.Background())
	if _, err := app.Append(0, ls, 0, t0, 1, nil, nil, promstorage.AOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	app = p.AppenderV2(context.Background())
	for _, tc := range []struct {
		t    int64
		v    float64
		want string
	}{{t0, 2, collector.ReasonDuplicate}, {t0 - 1000, 2, collector.ReasonOutOfOrder}, {t0 + 1000, 3, ""}} {
		_, err := app.Append(0, ls, 0, tc.t, tc.v, nil, nil, promstorage.AOptions{})
		if got := collector.ReasonOf(err); got != tc.want {
			t.Errorf("@%d=%v: %v (reason %q), want %q", tc.t, tc.v, err, got, tc.want)
		}
	}
	_ = app.Rollback()
}

// TestIngestAppendersKeepExemplars: the wrappers pass exemplars through.
func TestIngestAppendersKeepExemplars(t *testing.T) {
	p, store := newTestPipeline(t)
	app := p.AppenderV2(context.Background())
	ea, ok := app.(promstorage.ExemplarAppenderV2)
	if !ok {
		t.Fatalf("the hot path's appender %T takes no exemplars", app)
	}
	ls := seriesLabels("a")
	t0 := testNow.UnixMilli()
	ref, err := ea.Append(0, ls, 0, t0, 1, nil, nil, promstorage.AOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ea.AppendExemplars(ref, ls, []exemplar.Exemplar{{Labels: labels.FromStrings("trace_id", "t1"), Value: 1, Ts: t0, HasTs: true}}); err != nil {
		t.Fatal(err)
	}
	if err := ea.Commit(); err != nil {
		t.Fatal(err)
	}
	eq, err := store.ExemplarQuerier(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	res, err := eq.Select(t0-1, t0+1, []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, model.MetricNameLabel, "a")})
	if err != nil || len(res) != 1 || len(res[0].Exemplars) != 1 {
		t.Errorf("exemplars stored: %v, %v", res, err)
	}
}

func committed(t *testing.T, store *storage.Storage, ls labels.Labels) []float64 {
	t.Helper()
	q, err := store.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var ms []*labels.Matcher
	ls.Range(func(l labels.Label) { ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, l.Name, l.Value)) })
	set := q.Select(context.Background(), false, nil, ms...)
	var out []float64
	for set.Next() {
		if labels.Equal(set.At().Labels(), ls) {
			it := set.At().Iterator(nil)
			for it.Next() != 0 {
				_, v := it.At()
				out = append(out, v)
			}
		}
	}
	return out
}
