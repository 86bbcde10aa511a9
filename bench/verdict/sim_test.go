package main

import (
	"testing"
	"time"

	"github.com/vigilhq/vigil/deploy/verdict"
)

// TestVerdictQuality replays 200 simulated deployments through the engine
// and holds it to what it measured when it was tuned (see the README): a
// regression in the engine shows up here as lower recall or more false
// rollbacks.
func TestVerdictQuality(t *testing.T) {
	cfg := Config{N: 200, Seed: 1, RPS: 10, Step: 15 * time.Second, Window: 5 * time.Minute, Policy: verdict.DefaultPolicy()}
	r := Summarise(Simulate(cfg))
	t.Logf("\n%s", r)
	if r.FalseRollback > 0.01 {
		t.Errorf("false rollbacks %.1f%% > 1%%", 100*r.FalseRollback)
	}
	if r.RecallByKind[BadLatency] < 0.99 || r.RecallByKind[BadBoth] < 0.99 {
		t.Errorf("recall on latency regressions %.1f%%, on both %.1f%%: want ≥ 99%%", 100*r.RecallByKind[BadLatency], 100*r.RecallByKind[BadBoth])
	}
	if r.Recall < 0.9 || r.BadPromoted > 0.03 {
		t.Errorf("recall %.1f%%, bad promoted %.1f%%: want ≥ 90%% and ≤ 3%%", 100*r.Recall, 100*r.BadPromoted)
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
	cfg := Config{N: 20, Seed: 1, RPS: 10, Step: 15 * time.Second, Window: 5 * time.Minute, Policy: verdict.DefaultPolicy()}
	for b.Loop() {
		Simulate(cfg)
	}
}
