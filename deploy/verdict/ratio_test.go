package verdict

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestRatioLLR(t *testing.T) {
	tests := []struct {
		name             string
		canary, baseline Counts
		tolerance, floor float64
		sign             int // of the log likelihood ratio
	}{
		{"same rate favours no regression", Counts{10, 1000}, Counts{100, 10000}, 0.5, 0.002, -1},
		{"twice the rate favours the regression", Counts{20, 1000}, Counts{100, 10000}, 0.5, 0.002, 1},
		{"lower rate favours no regression", Counts{2, 1000}, Counts{100, 10000}, 0.5, 0.002, -1},
		{"no errors anywhere favours no regression", Counts{0, 5000}, Counts{0, 10000}, 0.5, 0.002, -1},
		{"errors on a clean baseline: the floor applies", Counts{12, 1000}, Counts{0, 10000}, 0.5, 0.002, 1},
		{"relative only", Counts{30, 1000}, Counts{100, 10000}, 0.5, 0, 1},
		{"absolute only", Counts{30, 1000}, Counts{100, 10000}, 0, 0.01, 1},
		{"several log lines per request", Counts{3000, 1000}, Counts{10000, 10000}, 0.5, 0.002, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			llr := RatioLLR(tc.canary, tc.baseline, tc.tolerance, tc.floor)
			if math.IsNaN(llr) || int(math.Copysign(1, llr)) != tc.sign {
				t.Errorf("log likelihood ratio %v, want sign %d", llr, tc.sign)
			}
		})
	}
	// More of the same evidence is stronger evidence.
	a := RatioLLR(Counts{20, 1000}, Counts{100, 10000}, 0.5, 0.002)
	b := RatioLLR(Counts{40, 2000}, Counts{200, 20000}, 0.5, 0.002)
	if !(b > a && a > 0) {
		t.Errorf("doubling the counts: %v then %v, want growing", a, b)
	}
}

// TestRatioSequentialErrorRates runs the ratio test the way the engine does
// (judged after every step of a window) on simulated traffic and checks
// Wald's promise: a canary as good as its baseline fails in at most about
// alpha of the runs, and one worse by the regression passes in at most about
// beta of them.
func TestRatioSequentialErrorRates(t *testing.T) {
	p := DefaultPolicy()
	sig := Signal{Name: "error_ratio", Kind: KindRatio, Tolerance: 0.5, Floor: 0.002}
	run := func(rng *rand.Rand, factor float64) Status {
		const rate, steps = 0.02, 400 // 2% errors; long enough for nearly every run to decide
		var s Samples
		for range 40 { // the baseline's history
			s.Baseline, s.BaselineTotal = append(s.Baseline, binomial(rng, 300, rate)), append(s.BaselineTotal, 300)
		}
		for i := range steps {
			s.Baseline, s.BaselineTotal = append(s.Baseline, binomial(rng, 300, rate)), append(s.BaselineTotal, 300)
			s.Canary, s.CanaryTotal = append(s.Canary, binomial(rng, 150, rate*factor)), append(s.CanaryTotal, 150)
			var r SignalResult
			judgeRatio(p, sig, s, &r, i == steps-1)
			if r.Status == StatusFail || r.Status == StatusPass {
				return r.Status
			}
		}
		return StatusPending
	}
	const n = 2000
	rng := rand.New(rand.NewPCG(1, 2))
	count := func(factor float64, status Status) float64 {
		k := 0
		for range n {
			if run(rng, factor) == status {
				k++
			}
		}
		return float64(k) / n
	}
	got := count(1, StatusFail)
	t.Logf("no regression: failed in %.2f%% of %d runs (alpha %.2f%%)", 100*got, n, 100*p.Alpha)
	if got > 1.5*p.Alpha {
		t.Errorf("no regression failed in %.2f%% of runs, want about alpha %.2f%% or less", 100*got, 100*p.Alpha)
	}
	got = count(1.5, StatusPass)
	t.Logf("+50%%: passed in %.1f%% of runs (beta %.0f%%)", 100*got, 100*p.Beta)
	if got > 1.5*p.Beta {
		t.Errorf("a +50%% regression passed in %.1f%% of runs, want about beta %.0f%% or less", 100*got, 100*p.Beta)
	}
	got = count(2, StatusFail)
	t.Logf("doubled errors: failed in %.1f%% of runs", 100*got)
	if got < 0.99 {
		t.Errorf("doubled errors failed in %.1f%% of runs, want at least 99%%", 100*got)
	}
}

func binomial(rng *rand.Rand, n int, p float64) float64 {
	k := 0
	for range n {
		if rng.Float64() < p {
			k++
		}
	}
	return float64(k)
}

func TestJudgeRatio(t *testing.T) {
	bound := 0.01
	sig := Signal{Name: "error_ratio", Kind: KindRatio, Tolerance: 0.5, Floor: 0.002}
	slo := Signal{Name: "slo_availability", Kind: KindRatio, Floor: 0.01, Max: &bound}
	steps := func(v float64, n int) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = v
		}
		return out
	}
	samples := func(sig Signal, cBad, cTotal, bBad, bTotal float64, n int) Samples {
		return Samples{Signal: sig, Canary: steps(cBad, n), CanaryTotal: steps(cTotal, n), Baseline: steps(bBad, 40), BaselineTotal: steps(bTotal, 40)}
	}
	absent := func(s Samples, canary, baseline bool) Samples {
		s.CanaryAbsent, s.BaselineAbsent = canary, baseline
		return s
	}
	tests := []struct {
		name    string
		s       Samples
		final   bool
		status  Status
		finding Finding
		reason  string
		canary  float64
		nonzero bool // p-value and log likelihood ratio present
	}{
		{"five times the errors fails", samples(sig, 5, 150, 1, 150, 4), false, StatusFail, "", "worse by", 5.0 / 150, true},
		{"same errors with much traffic passes", samples(sig, 3, 150, 6, 300, 40), false, StatusPass, "", "within tolerance", 3.0 / 150, true},
		{"same errors, little traffic, is pending", samples(sig, 1, 150, 2, 300, 2), false, StatusPending, "", "decides", 1.0 / 150, true},
		{"no canary events is no data", samples(sig, 0, 0, 2, 300, 4), false, StatusNoData, "", "events", math.NaN(), false},
		{"no input from the new version is no data, not zero errors", absent(samples(sig, 0, 150, 2, 300, 40), true, false), false, StatusNoData, "", "no input from the new version", math.NaN(), false},
		{"no input from either version is no data", absent(samples(sig, 0, 150, 0, 300, 40), true, true), false, StatusNoData, "", "no input from either version", math.NaN(), false},
		{"no input from the baseline is no data", absent(samples(sig, 5, 150, 0, 300, 4), false, true), false, StatusNoData, "", "no input from the baseline", 5.0 / 150, false},
		{"window over, no evidence of a regression", samples(sig, 1, 150, 2, 300, 4), true, StatusPending, "", "no evidence", 1.0 / 150, true},
		{"window over, leaning to the regression", samples(sig, 4, 150, 3, 300, 3), true, StatusPending, FindingSuspect, "suspect", 4.0 / 150, true},
		{"an SLO broken significantly fails at once", samples(slo, 6, 150, 6, 150, 3), false, StatusFail, FindingBound, "absolute bound broken", 6.0 / 150, true},
		{"above the SLO by chance is not broken", samples(slo, 1, 50, 1, 150, 3), false, StatusPending, "", "", 1.0 / 50, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r SignalResult
			judgeRatio(DefaultPolicy(), tc.s.Signal, tc.s, &r, tc.final)
			if r.Status != tc.status || r.Finding != tc.finding || !strings.Contains(r.Reason, tc.reason) {
				t.Fatalf("%s (finding %q) %q, want %s (finding %q) mentioning %q", r.Status, r.Finding, r.Reason, tc.status, tc.finding, tc.reason)
			}
			if math.IsNaN(tc.canary) != (r.Canary == nil) || (r.Canary != nil && math.Abs(*r.Canary-tc.canary) > 1e-12) {
				t.Errorf("canary ratio %v, want %v", r.Canary, tc.canary)
			}
			if tc.nonzero && r.PValue == nil {
				t.Errorf("no p-value")
			}
		})
	}
}
