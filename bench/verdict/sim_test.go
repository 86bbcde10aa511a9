package main

import (
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
