package main

import (
	"sort"
	"testing"
	"time"

	"github.com/vigilhq/vigil/deploy/verdict"
)

// TestVerdictQuality replays 1,000 simulated deployments through the engine
// with its default policy and window and holds it to the targets
// (see the verdict-quality table in docs/verdict.md): a regression in the engine
// shows up here as lower recall, more false rollbacks or slower decisions.
func TestVerdictQuality(t *testing.T) {
	cfg := Config{N: 1000, Seed: 1, RPS: 10, Step: 15 * time.Second, Window: 10 * time.Minute, Policy: verdict.DefaultPolicy()}
	r := Summarise(Simulate(cfg))
	t.Logf("\n%s", r)
	if r.Recall < 0.99 {
		t.Errorf("recall %.1f%% on bad deploys, want ≥ 99%%", 100*r.Recall)
	}
	if r.RecallByKind[BadLatency] < 0.99 || r.RecallByKind[BadBoth] < 0.99 {
		t.Errorf("recall on latency regressions %.1f%%, on both %.1f%%: want ≥ 99%%", 100*r.RecallByKind[BadLatency], 100*r.RecallByKind[BadBoth])
	}
	if r.BadPromoted > 0.005 {
		t.Errorf("%.1f%% of bad deploys promoted, want ≤ 0.5%%", 100*r.BadPromoted)
	}
	if r.FalseRollback > 0.01 {
		t.Errorf("false rollbacks %.1f%% > 1%%", 100*r.FalseRollback)
	}
	if r.HealthyPromoted < 0.95 {
		t.Errorf("%.1f%% of healthy deploys promoted, want ≥ 95%%", 100*r.HealthyPromoted)
	}
	if r.MedianSecs > 60 {
		t.Errorf("median decision after %.0fs of traffic, want ≤ 60s", r.MedianSecs)
	}
	for k, d := range r.Other[NoData] {
		if k != verdict.Inconclusive {
			t.Errorf("%d no-data deploys decided %s", d, k)
		}
	}
}

func BenchmarkSimulate(b *testing.B) {
	cfg := Config{N: 20, Seed: 1, RPS: 10, Step: 15 * time.Second, Window: 10 * time.Minute, Policy: verdict.DefaultPolicy()}
	for b.Loop() {
		Simulate(cfg)
	}
}

// TestNeededPredictsPromotion holds the verdict's Needed — how much more
// traffic a promotion needs at the current rate — to what the simulator
// shows: healthy deployments still undecided after a minute are followed
// (in a window long enough that none is cut short) until they are
// promoted, and the time it took is compared with the time predicted at
// that minute (the minute plus Needed.Seconds).
func TestNeededPredictsPromotion(t *testing.T) {
	cfg := Config{N: 300, Seed: 7, RPS: 10, Step: 15 * time.Second, Window: time.Hour, Policy: verdict.DefaultPolicy()}
	const at = 4 // steps: a minute
	var ratios []float64
	var undecided, predicted int
	for i, s := range Scenarios(cfg) {
		if s.Kind != Healthy {
			continue
		}
		prediction := -1.0
		c := cfg
		c.Observe = func(step int, j verdict.Judgement) {
			if step == at && !j.Final {
				undecided++
				if j.Needed != nil {
					prediction = float64(step)*cfg.Step.Seconds() + j.Needed.Seconds
				}
			}
		}
		o := Run(c, s, cfg.Seed*1_000_003+uint64(i))
		if prediction < 0 {
			continue
		}
		predicted++
		if o.Decision == verdict.Promote {
			ratios = append(ratios, o.Seconds/prediction)
		}
	}
	if undecided < 40 || predicted < undecided*9/10 {
		t.Fatalf("%d healthy deployments undecided after a minute, %d with a prediction: want most with one", undecided, predicted)
	}
	sort.Float64s(ratios)
	q := func(p float64) float64 { return ratios[int(p*float64(len(ratios)-1))] }
	within := 0
	for _, r := range ratios {
		if r >= 0.5 && r <= 2 {
			within++
		}
	}
	t.Logf("%d undecided after a minute, %d predicted, %d promoted: actual/predicted time to promotion p10 %.2f, median %.2f, p90 %.2f; %d%% within a factor of 2",
		undecided, predicted, len(ratios), q(0.1), q(0.5), q(0.9), 100*within/len(ratios))
	if m := q(0.5); m < 0.67 || m > 1.5 {
		t.Errorf("median actual/predicted %.2f, want within [0.67, 1.5]", m)
	}
	if within < len(ratios)*3/4 {
		t.Errorf("%d of %d promotions within a factor of 2 of the prediction, want three quarters", within, len(ratios))
	}
}

// TestBacktestSimulated writes 200 simulated deployments into Vigil's
// storage as the collector would have flushed them and backtests them:
// the whole path the simulator stands in for (PromQL per-step counts,
// native histogram quantiles) scored as recorded history.
func TestBacktestSimulated(t *testing.T) {
	cfg := Config{N: 200, Seed: 2, RPS: 10, Step: 15 * time.Second, Window: 10 * time.Minute, Policy: verdict.DefaultPolicy()}
	rep, err := BacktestSimulated(cfg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", backtestString(rep))
	s := rep.Scores[0].Overall
	if s.Deployments != cfg.N || s.Bad == 0 {
		t.Fatalf("scores %+v", s)
	}
	if *s.Recall < 0.97 || *s.Precision < 0.97 || *s.FalseRollbackRate > 0.02 {
		t.Errorf("recall %.3f, precision %.3f, false rollbacks %.3f: want ≥ 97%%, ≥ 97%%, ≤ 2%%", *s.Recall, *s.Precision, *s.FalseRollbackRate)
	}
}
