package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/deploy"
	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/semconv"
	"github.com/vigilhq/vigil/query"
	"github.com/vigilhq/vigil/storage"
)

// The simulator's deployments can also be written down as the telemetry
// Vigil would have stored — span counters, a native histogram of the
// latencies, error log counts, flushed every 5 s — and replayed by the
// backtest (deploy.Backtester) over the real storage and PromQL engine,
// with the scenarios' kinds as the truth. That runs the whole path the
// simulator replaces (the PromQL sampling, the per-step counts, the
// histogram quantiles) and scores it as a backtest scores recorded history.

// flush is the collector's flush interval.
const flush = 5 * time.Second

// latencySchema is the native histograms' resolution: buckets 2^(1/8) wide.
const latencySchema = 3

// versionSeries are the series of one version of a simulated service, and
// their running totals.
type versionSeries struct {
	ok, bad, logs, dur labels.Labels
	nOK, nBad          float64
	buckets            map[int]uint64 // cumulative counts per bucket index
	count              uint64
	sum                float64
}

func newVersionSeries(service, version string) *versionSeries {
	base := []string{semconv.LabelService, service, semconv.LabelEnvironment, "production", semconv.LabelVersion, version}
	span := append(append([]string{}, base...), semconv.LabelSpanKind, semconv.KindServer, semconv.LabelSpanName, "GET /")
	return &versionSeries{
		ok:      labels.FromStrings(append([]string{model.MetricNameLabel, semconv.SpanCalls, semconv.LabelStatusCode, "STATUS_CODE_UNSET"}, span...)...),
		bad:     labels.FromStrings(append([]string{model.MetricNameLabel, semconv.SpanCalls, semconv.LabelStatusCode, semconv.StatusError}, span...)...),
		dur:     labels.FromStrings(append([]string{model.MetricNameLabel, semconv.SpanDuration}, span...)...),
		logs:    labels.FromStrings(append([]string{model.MetricNameLabel, semconv.LogRecords, semconv.LabelSeverity, "error"}, base...)...),
		buckets: map[int]uint64{},
	}
}

// bucketIndex is the native histogram bucket of a positive value at
// latencySchema: the bucket whose upper bound is 2^(index / 2^schema).
func bucketIndex(v float64) int {
	return int(math.Ceil(math.Log2(v) * (1 << latencySchema)))
}

// histogram is the cumulative native histogram so far.
func (s *versionSeries) histogram() *histogram.Histogram {
	h := &histogram.Histogram{Schema: latencySchema, Count: s.count, Sum: s.sum, ZeroThreshold: 1e-128}
	idx := make([]int, 0, len(s.buckets))
	for i := range s.buckets {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	var prev int64
	for k, i := range idx {
		switch {
		case k == 0:
			h.PositiveSpans = append(h.PositiveSpans, histogram.Span{Offset: int32(i), Length: 1})
		case i == idx[k-1]+1:
			h.PositiveSpans[len(h.PositiveSpans)-1].Length++
		default:
			h.PositiveSpans = append(h.PositiveSpans, histogram.Span{Offset: int32(i - idx[k-1] - 1), Length: 1})
		}
		c := int64(s.buckets[i])
		h.PositiveBuckets = append(h.PositiveBuckets, c-prev)
		prev = c
	}
	return h
}

// serve draws one flush of traffic of a version and appends its series at ts.
func (s *versionSeries) serve(app promstorage.AppenderV2, rng *rand.Rand, ts time.Time, rps, errRatio, latency float64) error {
	n := poisson(rng, rps*flush.Seconds())
	for range n {
		if rng.Float64() < errRatio {
			s.nBad++
		} else {
			s.nOK++
		}
		v := latency * math.Exp(0.5*rng.NormFloat64())
		s.buckets[bucketIndex(v)]++
		s.count++
		s.sum += v
	}
	t := ts.UnixMilli()
	for _, x := range []struct {
		ls labels.Labels
		v  float64
	}{{s.ok, s.nOK}, {s.bad, s.nBad}, {s.logs, s.nBad}} { // one error line per failed request
		if _, err := app.Append(0, x.ls, 0, t, x.v, nil, nil, promstorage.AOptions{}); err != nil {
			return fmt.Errorf("append %s: %w", x.ls, err)
		}
	}
	if s.count == 0 {
		return nil
	}
	if _, err := app.Append(0, s.dur, 0, t, 0, s.histogram(), nil, promstorage.AOptions{}); err != nil {
		return fmt.Errorf("append %s: %w", s.dur, err)
	}
	return nil
}

// RecordSimulated writes the scenarios' deployments into st as Vigil would
// have stored them: each its own service, its baseline (v1) serving from
// one window before the deploy at start until the window's end, its canary
// (v2) from start; and returns the deployments with their truth (bad for
// the bad scenarios, good for the others).
func RecordSimulated(st *storage.Storage, cfg Config, scenarios []Scenario, start time.Time) ([]deploy.Deployment, []deploy.TruthLabel, error) {
	type sim struct {
		s                  Scenario
		baseline, canary   *versionSeries
		rngBase, rngCanary *rand.Rand
	}
	var sims []sim
	var deps []deploy.Deployment
	var truth []deploy.TruthLabel
	for i, s := range scenarios {
		name := fmt.Sprintf("sim-%04d", i)
		sims = append(sims, sim{s: s, baseline: newVersionSeries(name, "v1"), canary: newVersionSeries(name, "v2"),
			rngBase: rand.New(rand.NewPCG(cfg.Seed, uint64(2*i))), rngCanary: rand.New(rand.NewPCG(cfg.Seed, uint64(2*i+1)))})
		deps = append(deps, deploy.Deployment{ID: name, Service: name, Environment: "production", Version: "v2", PreviousVersion: "v1", StartedAt: start, Source: deploy.FormatGeneric})
		label := deploy.TruthGood
		if s.Bad() {
			label = deploy.TruthBad
		}
		truth = append(truth, deploy.TruthLabel{ID: name, Label: label})
	}
	end := start.Add(cfg.Window)
	app := st.AppenderV2(context.Background())
	for ts := start.Add(-cfg.Window); !ts.After(end); ts = ts.Add(flush) {
		for _, m := range sims {
			if err := m.baseline.serve(app, m.rngBase, ts, m.s.BaselineRPS, m.s.ErrRatio, m.s.Latency); err != nil {
				return nil, nil, err
			}
			if ts.Before(start) || m.s.CanaryRPS == 0 {
				continue
			}
			if err := m.canary.serve(app, m.rngCanary, ts, m.s.CanaryRPS, math.Min(m.s.ErrRatio*m.s.ErrFactor, 1), m.s.Latency*m.s.LatFactor); err != nil {
				return nil, nil, err
			}
		}
		if ts.Sub(start)%time.Minute == 0 {
			if err := app.Commit(); err != nil {
				return nil, nil, fmt.Errorf("commit: %w", err)
			}
			app = st.AppenderV2(context.Background())
		}
	}
	if err := app.Commit(); err != nil {
		return nil, nil, fmt.Errorf("commit: %w", err)
	}
	return deps, truth, nil
}

// BacktestSimulated records the simulator's deployments in a new storage
// under dir and backtests them with the run's policy, window and step.
func BacktestSimulated(cfg Config, dir string) (deploy.BacktestReport, error) {
	scfg := storage.DefaultConfig()
	scfg.Path = dir
	st, err := storage.Open(scfg, nil, nil)
	if err != nil {
		return deploy.BacktestReport{}, err
	}
	defer st.Close()
	start := time.Now().Add(-2 * cfg.Window).Truncate(time.Minute)
	deps, truth, err := RecordSimulated(st, cfg, Scenarios(cfg), start)
	if err != nil {
		return deploy.BacktestReport{}, err
	}
	qcfg := query.DefaultConfig()
	eng, err := query.NewEngine(qcfg, "", nil, nil)
	if err != nil {
		return deploy.BacktestReport{}, err
	}
	b := deploy.Backtester{Querier: deploy.PromQL{Engine: eng, Queryable: st}, Step: cfg.Step, RateWindow: time.Minute}
	policy := deploy.BacktestPolicy{Name: "default", Policy: cfg.Policy, Window: model.Duration(cfg.Window)}
	return b.Run(context.Background(), deps, deploy.BacktestOptions{
		From: start, To: start.Add(time.Second), Labels: truth, Policies: []deploy.BacktestPolicy{policy},
	})
}

// backtestString summarises a backtest of simulated deployments.
func backtestString(r deploy.BacktestReport) string {
	s := r.Scores[0].Overall
	pct := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%.1f%%", 100**p)
	}
	secs := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%.0f s", *p)
	}
	byKind := map[string]map[verdict.Decision]int{}
	for _, d := range r.Deployments {
		if byKind[d.Truth.Label] == nil {
			byKind[d.Truth.Label] = map[verdict.Decision]int{}
		}
		byKind[d.Truth.Label][d.Results[0].Decision]++
	}
	return fmt.Sprintf("backtest over the simulated deployments recorded in Vigil's storage: %d deployments (%d bad, %d good)\n"+
		"precision %s, recall %s, false rollbacks %s, median decision %s, p95 %s\n"+
		"decisions on bad deployments %v, on good ones %v\n",
		s.Deployments, s.Bad, s.Good, pct(s.Precision), pct(s.Recall), pct(s.FalseRollbackRate), secs(s.MedianSeconds), secs(s.P95Seconds),
		byKind[deploy.TruthBad], byKind[deploy.TruthGood])
}
