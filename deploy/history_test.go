package deploy

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/internal/semconv"
	"github.com/vigilhq/vigil/storage"
)

// era is a version of a service serving traffic from from to to.
type era struct {
	version  string
	from, to time.Time
	rps      float64 // requests (or jobs) a second
	errRatio float64
	// latBucket is the native histogram bucket (schema 0) of the latency:
	// -3 is (62.5ms, 125ms], -1 (250ms, 500ms].
	latBucket int32
}

// serviceHistory is what a service served over the history: its eras.
type serviceHistory struct {
	name string
	// jobs: a queue consumer counting jobs_processed_total and
	// jobs_failed_total rather than serving server spans.
	jobs bool
	eras []era
}

// series of one era, and its running counts.
type eraSeries struct {
	e                    era
	ok, bad, dur         labels.Labels
	nOK, nBad, hc        float64
	jobsTotal, jobsFails labels.Labels
}

// writeHistory writes what the services served, as the collector flushes it
// every 5 s — cumulative span counters and a native histogram per version,
// or a queue consumer's job counters — into Vigil's storage, in time order
// (so that the head takes hours of it), with firing ALERTS series. The same
// seed writes the same history.
func writeHistory(t testing.TB, st *storage.Storage, seed uint64, from, to time.Time, services []serviceHistory, alerts []firingAlert) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 11))
	var all []*eraSeries
	svcOf := map[*eraSeries]serviceHistory{}
	for _, s := range services {
		for _, e := range s.eras {
			base := []string{semconv.LabelService, s.name, semconv.LabelEnvironment, "production", semconv.LabelVersion, e.version}
			es := &eraSeries{e: e}
			if s.jobs {
				es.jobsTotal = labels.FromStrings(append([]string{model.MetricNameLabel, "jobs_processed_total"}, base...)...)
				es.jobsFails = labels.FromStrings(append([]string{model.MetricNameLabel, "jobs_failed_total"}, base...)...)
			} else {
				span := append(append([]string{}, base...), semconv.LabelSpanKind, semconv.KindServer, semconv.LabelSpanName, "POST /orders")
				es.ok = labels.FromStrings(append([]string{model.MetricNameLabel, semconv.SpanCalls, semconv.LabelStatusCode, "STATUS_CODE_UNSET"}, span...)...)
				es.bad = labels.FromStrings(append([]string{model.MetricNameLabel, semconv.SpanCalls, semconv.LabelStatusCode, semconv.StatusError}, span...)...)
				es.dur = labels.FromStrings(append([]string{model.MetricNameLabel, semconv.SpanDuration}, span...)...)
			}
			all = append(all, es)
			svcOf[es] = s
		}
	}
	app := st.AppenderV2(context.Background())
	n := 0
	add := func(ls labels.Labels, ts time.Time, v float64, h *histogram.Histogram) {
		if _, err := app.Append(0, ls, 0, ts.UnixMilli(), v, h, nil, promstorage.AOptions{}); err != nil {
			t.Fatalf("append %s: %v", ls, err)
		}
		if n++; n%50000 == 0 {
			if err := app.Commit(); err != nil {
				t.Fatal(err)
			}
			app = st.AppenderV2(context.Background())
		}
	}
	for ts := from; !ts.After(to); ts = ts.Add(5 * time.Second) {
		for _, es := range all {
			e := es.e
			if ts.Before(e.from) || ts.After(e.to) {
				continue
			}
			// Requests this flush: Poisson-like around rps × 5 s.
			mean := e.rps * 5
			k := math.Max(0, math.Round(mean+math.Sqrt(mean)*rng.NormFloat64()))
			bad := 0.0
			for range int(k) {
				if rng.Float64() < e.errRatio {
					bad++
				}
			}
			es.nOK += k - bad
			es.nBad += bad
			es.hc += k
			if svcOf[es].jobs {
				add(es.jobsTotal, ts, es.nOK+es.nBad, nil)
				if es.nBad > 0 {
					add(es.jobsFails, ts, es.nBad, nil)
				}
				continue
			}
			add(es.ok, ts, es.nOK, nil)
			if es.nBad > 0 {
				add(es.bad, ts, es.nBad, nil)
			}
			hc := uint64(es.hc)
			add(es.dur, ts, 0, &histogram.Histogram{Schema: 0, Count: hc, Sum: float64(hc) * 0.1, ZeroThreshold: 1e-128,
				PositiveSpans: []histogram.Span{{Offset: e.latBucket, Length: 1}}, PositiveBuckets: []int64{int64(hc)}})
		}
		for _, a := range alerts {
			if !ts.Before(a.from) && !ts.After(a.to) && ts.Sub(a.from)%(15*time.Second) == 0 {
				add(labels.FromStrings(model.MetricNameLabel, "ALERTS", "alertname", "HighErrorRate", "alertstate", "firing", "severity", "critical",
					semconv.LabelService, a.service, semconv.LabelEnvironment, "production"), ts, 1, nil)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

// firingAlert is a critical alert firing for a service.
type firingAlert struct {
	service  string
	from, to time.Time
}
