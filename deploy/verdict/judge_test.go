package verdict

import (
	"strings"
	"testing"
)

func TestJudge(t *testing.T) {
	steady := func(v float64, n int) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = v * (1 + 0.02*float64(i%5-2)) // ±4% noise, deterministic
		}
		return out
	}
	traffic := func(n int) Samples {
		return Samples{Signal: Signal{Name: "request_rate", Kind: KindTraffic}, Canary: steady(150, n), Baseline: steady(150, 20)}
	}
	lat := Signal{Name: "latency_p99", Tolerance: 0.25, Floor: 0.005}
	tput := Signal{Name: "throughput", Direction: LowerIsWorse, Tolerance: 0.1}
	bound := 0.2
	tests := []struct {
		name     string
		samples  []Samples
		prog     Progress
		decision Decision
		final    bool
		reason   string
		finding  Finding // of the last signal
	}{
		{"same latency, shown within tolerance early", []Samples{traffic(6), {Signal: lat, Canary: steady(0.1, 6), Baseline: steady(0.1, 20)}},
			Progress{Elapsed: 90, Window: 300, Step: 15}, Promote, true, "no signal worse", ""},
		{"twice the latency rolls back", []Samples{traffic(6), {Signal: lat, Canary: steady(0.2, 6), Baseline: steady(0.1, 20)}},
			Progress{Elapsed: 90, Window: 300, Step: 15}, Rollback, true, "latency_p99", ""},
		{"10% slower is within tolerance", []Samples{traffic(8), {Signal: lat, Canary: steady(0.11, 8), Baseline: steady(0.1, 20)}},
			Progress{Elapsed: 120, Window: 300, Step: 15}, Promote, true, "", ""},
		{"lower is worse: throughput drop", []Samples{traffic(6), {Signal: tput, Canary: steady(50, 6), Baseline: steady(100, 20)}},
			Progress{Elapsed: 90, Window: 300, Step: 15}, Rollback, true, "throughput", ""},
		{"lower is worse: throughput rise is fine", []Samples{traffic(6), {Signal: tput, Canary: steady(200, 6), Baseline: steady(100, 20)}},
			Progress{Elapsed: 90, Window: 300, Step: 15}, Promote, true, "", ""},
		{"not enough traffic says how long to wait", []Samples{{Signal: Signal{Name: "request_rate", Kind: KindTraffic}, Canary: []float64{10, 10}},
			{Signal: lat, Canary: steady(0.1, 2), Baseline: steady(0.1, 20)}},
			Progress{Elapsed: 30, Window: 300, Step: 15}, Inconclusive, false, "needed", FindingFewSamples},
		{"too few samples is not judged yet", []Samples{traffic(2), {Signal: lat, Canary: steady(0.1, 2), Baseline: steady(0.1, 20)}},
			Progress{Elapsed: 30, Window: 300, Step: 15}, Inconclusive, false, "no signal has data", FindingFewSamples},
		{"no data at the end of the window is inconclusive", []Samples{{Signal: lat}},
			Progress{Elapsed: 300, Window: 300, Step: 15}, Inconclusive, true, "no signal has data", ""},
		{"absolute bound breaks at once", []Samples{traffic(4), {Signal: Signal{Name: "slo", Max: &bound}, Canary: steady(0.3, 4), Baseline: steady(0.3, 20)}},
			Progress{Elapsed: 60, Window: 300, Step: 15}, Rollback, true, "critical: slo", FindingBound},
		{"window over, worse than allowed but not significantly", []Samples{traffic(4), {Signal: lat, Canary: steady(0.13, 4), Baseline: steady(0.1, 20)}},
			Progress{Elapsed: 300, Window: 300, Step: 15}, Inconclusive, true, "looks worse than allowed", FindingSuspect},
		{"firing critical alert", []Samples{traffic(1), {Signal: Signal{Name: "critical_alerts", Kind: KindAlert, Critical: true}, Canary: []float64{1}}},
			Progress{Elapsed: 15, Window: 300, Step: 15}, Rollback, true, "critical: critical_alerts", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := Judge(DefaultPolicy(), tc.samples, tc.prog)
			if j.Decision != tc.decision || j.Final != tc.final || !strings.Contains(j.Reason, tc.reason) {
				t.Errorf("got %s final=%v %q, want %s final=%v mentioning %q\n%+v", j.Decision, j.Final, j.Reason, tc.decision, tc.final, tc.reason, j.Signals)
			}
			if got := j.Signals[len(j.Signals)-1].Finding; got != tc.finding {
				t.Errorf("finding %q, want %q: %+v", got, tc.finding, j.Signals)
			}
			if j.Decision == Inconclusive && !j.Final && j.NeedSecs <= 0 {
				t.Errorf("inconclusive without needSeconds")
			}
		})
	}
}
