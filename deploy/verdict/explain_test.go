package verdict

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// perStep spreads n events over steps evenly (the remainder on the first).
func perStep(n float64, steps int) []float64 {
	out := make([]float64, steps)
	for i := range out {
		out[i] = math.Floor(n / float64(steps))
	}
	out[0] += n - math.Floor(n/float64(steps))*float64(steps)
	return out
}

func wobble(v float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v * (1 + 0.03*float64(i%5-2))
	}
	return out
}

// TestExplainGolden words representative verdicts: the Summary and each
// signal's Text are what people read (in the API, the rollback webhook's
// body and the CLI), so they are held to golden files.
func TestExplainGolden(t *testing.T) {
	ds := map[string]Signal{}
	for _, s := range DefaultSignals() {
		ds[s.Name] = s
	}
	ratio := func(name string, cBad, cTot, bBad, bTot float64, cSteps, bSteps int) Samples {
		return Samples{Signal: ds[name], Canary: perStep(cBad, cSteps), CanaryTotal: perStep(cTot, cSteps),
			Baseline: perStep(bBad, bSteps), BaselineTotal: perStep(bTot, bSteps)}
	}
	traffic := func(total float64, steps int) Samples {
		return Samples{Signal: ds["request_rate"], Canary: perStep(total, steps), Baseline: perStep(10*total, 40)}
	}
	lat := func(name string, c, b float64, cn int) Samples {
		return Samples{Signal: ds[name], Canary: wobble(c, cn), Baseline: wobble(b, 40)}
	}
	alerts := Samples{Signal: ds["critical_alerts"]}
	budget := 0.001
	slo := ds["error_ratio"]
	slo.Name, slo.Max, slo.Weight, slo.Tolerance, slo.Floor = "slo_availability", &budget, 1, 0, budget
	th := 0.3
	sloLat := Signal{Name: "slo_latency", Query: LatencyQuery(0.99), Max: &th, Weight: 1, Tolerance: 0.25, Floor: 0.03}
	jobsTotal := Signal{Name: "request_rate", Kind: KindTraffic, Query: "x", Unit: "jobs"}
	jobsErr := Signal{Name: "error_ratio", Kind: KindRatio, Query: "x", Total: "y", Tolerance: 0.5, Floor: 0.002, Weight: 2, Unit: "jobs"}
	type tcase struct {
		name    string
		samples []Samples
		elapsed float64
		window  float64
		mode    string
		stage   string
		mutate  func(*Verdict)
	}
	tests := []tcase{
		{name: "rollback on the error ratio", elapsed: 45, samples: []Samples{traffic(920, 3), ratio("error_ratio", 38, 920, 41, 4500, 3, 40),
			lat("latency_p50", 0.05, 0.05, 3), lat("latency_p99", 0.21, 0.2, 3), ratio("log_error_ratio", 9, 920, 40, 4500, 3, 40), alerts}},
		{name: "rollback on latency", elapsed: 120, samples: []Samples{traffic(2400, 8), ratio("error_ratio", 20, 2400, 45, 5000, 8, 40),
			lat("latency_p50", 0.12, 0.05, 8), lat("latency_p99", 0.48, 0.21, 8), ratio("log_error_ratio", 20, 2400, 45, 5000, 8, 40), alerts}},
		{name: "rollback on a broken SLO", elapsed: 90, samples: []Samples{traffic(1500, 6), ratio("error_ratio", 30, 1500, 95, 5000, 6, 40),
			{Signal: slo, Canary: perStep(30, 6), CanaryTotal: perStep(1500, 6), Baseline: perStep(95, 40), BaselineTotal: perStep(5000, 40)}, alerts}},
		{name: "rollback on a critical alert", elapsed: 30, samples: []Samples{traffic(300, 2), ratio("error_ratio", 3, 300, 45, 5000, 2, 40),
			{Signal: ds["critical_alerts"], Canary: []float64{1}}}},
		{name: "early promotion", elapsed: 165, samples: []Samples{traffic(16500, 11), ratio("error_ratio", 80, 16500, 420, 50000, 11, 40),
			lat("latency_p50", 0.05, 0.05, 11), lat("latency_p99", 0.212, 0.208, 11), ratio("log_error_ratio", 80, 16500, 420, 50000, 11, 40), alerts}},
		{name: "promotion at the end of the window without log data", elapsed: 600, samples: []Samples{traffic(6000, 40), ratio("error_ratio", 52, 6000, 420, 50000, 40, 40),
			lat("latency_p50", 0.05, 0.05, 40), lat("latency_p99", 0.25, 0.2, 40), {Signal: ds["log_error_ratio"]}, alerts}},
		{name: "too few requests yet", elapsed: 30, samples: []Samples{traffic(120, 2), ratio("error_ratio", 1, 120, 45, 5000, 2, 40),
			lat("latency_p50", 0.05, 0.05, 2), alerts}},
		{name: "undecided, leaning promote", elapsed: 60, samples: []Samples{traffic(1000, 4), ratio("error_ratio", 6, 1000, 45, 5000, 4, 40),
			lat("latency_p50", 0.05, 0.05, 4), alerts}},
		{name: "window over, suspect", elapsed: 600, samples: []Samples{traffic(6000, 40), ratio("error_ratio", 80, 6000, 420, 50000, 40, 40), alerts}},
		{name: "no traffic", elapsed: 120, samples: []Samples{{Signal: ds["request_rate"]}, {Signal: ds["error_ratio"]}, {Signal: ds["latency_p99"]}, alerts}},
		{name: "error verdict", elapsed: 120, samples: []Samples{traffic(1200, 8)}, mutate: func(v *Verdict) {
			v.Decision, v.Final, v.Reason = Error, true, "5 evaluations in a row failed (deploy.max_evaluation_errors), the last: query timed out"
		}},
		{name: "first deploy promoted", elapsed: 600, mode: ModeNone, samples: []Samples{traffic(6000, 40), ratio("error_ratio", 2, 6000, 0, 0, 40, 1),
			{Signal: slo, Canary: perStep(2, 40), CanaryTotal: perStep(6000, 40)}, {Signal: sloLat, Canary: wobble(0.2, 40)}, lat("latency_p99", 0.2, 0, 40), alerts}},
		{name: "first deploy breaks its SLO", elapsed: 60, mode: ModeNone, samples: []Samples{traffic(2000, 4),
			{Signal: slo, Canary: perStep(40, 4), CanaryTotal: perStep(2000, 4)}, {Signal: sloLat, Canary: wobble(0.2, 4)}, alerts}},
		{name: "watch finds a regression", elapsed: 420, window: 1800, stage: StageWatch, mode: ModeBefore, samples: []Samples{traffic(6000, 40), ratio("error_ratio", 240, 6000, 420, 50000, 40, 40), alerts}},
		{name: "watch goes on", elapsed: 420, window: 1800, stage: StageWatch, mode: ModeBefore, samples: []Samples{traffic(6000, 40), ratio("error_ratio", 50, 6000, 420, 50000, 40, 40), alerts},
			mutate: func(v *Verdict) { v.Decision, v.Final = Inconclusive, false }},
		{name: "a queue consumer's jobs", elapsed: 45, samples: []Samples{{Signal: jobsTotal, Canary: perStep(900, 3)},
			{Signal: jobsErr, Canary: perStep(60, 3), CanaryTotal: perStep(900, 3), Baseline: perStep(50, 40), BaselineTotal: perStep(5000, 40)}}},
	}
	var out strings.Builder
	for _, tc := range tests {
		if tc.window == 0 {
			tc.window = 600
		}
		prog := Progress{Elapsed: tc.elapsed, Window: tc.window, Step: 15, Overlap: 1, BoundsOnly: tc.mode == ModeNone}
		if tc.stage == StageWatch {
			prog.Elapsed, prog.Window = math.Min(tc.elapsed, 600), 600
		}
		v := Verdict{Service: "checkout", Version: "v2", Baseline: "v1", BaselineMode: ModeConcurrent, Stage: StageVerify,
			TrafficSeconds: tc.elapsed, WindowSeconds: tc.window, Judgement: Judge(DefaultPolicy(), tc.samples, prog)}
		if tc.mode != "" {
			v.BaselineMode = tc.mode
		}
		if tc.mode == ModeNone {
			v.Baseline = ""
		}
		if tc.stage != "" {
			v.Stage = tc.stage
		}
		if tc.mutate != nil {
			tc.mutate(&v)
		}
		var specs []Signal
		for _, s := range tc.samples {
			specs = append(specs, s.Signal)
		}
		explain(&v, specs)
		fmt.Fprintf(&out, "## %s (%s)\n%s\n", tc.name, v.Decision, v.Summary)
		for _, s := range v.Signals {
			fmt.Fprintf(&out, "  - [%s%s] %s\n", s.Status, leaning(s), s.Text)
		}
		out.WriteString("\n")
		checkWording(t, tc.name, v)
	}
	golden(t, "explain.golden", out.String())
}

func leaning(s SignalResult) string {
	if s.Leaning == "" {
		return ""
	}
	return ", leaning " + s.Leaning
}

// checkWording holds every text to the rules: no floating-point noise, no
// "pending" for a signal without data.
func checkWording(t *testing.T, name string, v Verdict) {
	t.Helper()
	texts := []string{v.Summary}
	for _, s := range v.Signals {
		texts = append(texts, s.Text)
		if s.Status == StatusNoData && !strings.Contains(s.Text, "no data") && !strings.Contains(s.Text, "no previous version") {
			t.Errorf("%s: %s has no data but its text does not say so: %q", name, s.Name, s.Text)
		}
	}
	for _, x := range texts {
		if x == "" {
			t.Errorf("%s: an empty text", name)
		}
		for _, noise := range []string{"e+", "e-0", "0000", "NaN", "Inf", "pending"} {
			if strings.Contains(x, noise) {
				t.Errorf("%s: %q contains %q", name, x, noise)
			}
		}
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs (run with -update after checking):\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

func TestFormatting(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{fmtPct(0.041), "4.1%"}, {fmtPct(0.009), "0.9%"}, {fmtPct(0.00903), "0.9%"}, {fmtPct(0.1234), "12%"}, {fmtPct(0), "0%"},
		{fmtPct(0.0000123), "0.0012%"}, {fmtPct(0.0996), "10%"}, {fmtPct(1), "100%"},
		{fmtCount(4500), "4,500"}, {fmtCount(920.4), "920"}, {fmtCount(1234567), "1,234,567"}, {fmtCount(0), "0"},
		{fmtSeconds(0.2123), "212 ms"}, {fmtSeconds(0.00045), "450 µs"}, {fmtSeconds(1.5), "1.5 s"}, {fmtSeconds(0.1), "100 ms"},
		{fmtDuration(45), "45 s"}, {fmtDuration(165), "2 min 45 s"}, {fmtDuration(600), "10 min"}, {fmtDuration(3900), "1 h 5 min"}, {fmtDuration(44.6), "45 s"},
		{fmtSig(12345.6, 3), "12,346"}, {fmtSig(0.30000000000000004, 3), "0.3"}, {fmtSig(-1234.6, 2), "-1,235"},
		{fmtP(0.00012), "p = 0.00012"}, {fmtP(0.00001), "p < 0.0001"}, {fmtP(0.049999), "p = 0.05"},
		{fmtBytes(1.5e6), "1.5 MB"}, {fmtRough(9060), "9,100"}, {fmtRough(3234), "3,200"}, {fmtRough(42), "42"}, {fmtRoughDuration(2265), "38 min"}, {fmtRoughDuration(33), "33 s"}, {fmtSignedPct(1.29), "+129%"}, {fmtSignedPct(-0.03), "-3%"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
