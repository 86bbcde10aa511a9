package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigilhq/vigil/deploy/verdict"
)

// The -update flag may also be defined by another test file of this
// package; define it only when it is not.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite the golden files in testdata/")
	}
}

func updateGolden() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

func fp(v float64) *float64 { return &v }

// TestRenderVerdict checks the report a person reads against golden files
// (refresh with go test -run TestRenderVerdict -update).
func TestRenderVerdict(t *testing.T) {
	at := time.Date(2026, 11, 20, 10, 5, 0, 0, time.UTC)
	counts := func(cb, ct, bb, bt float64) *[2]verdict.Counts {
		return &[2]verdict.Counts{{Bad: cb, Total: ct}, {Bad: bb, Total: bt}}
	}
	rollback := verdict.Verdict{
		ID: "3f2a", Service: "payments", Environment: "production", Version: "v2", Baseline: "v1", BaselineMode: "concurrent",
		Start: at.Add(-time.Minute), EvaluatedAt: at, TrafficSeconds: 45, WindowSeconds: 300,
		Judgement: verdict.Judgement{Decision: verdict.Rollback, Score: 0.4, Final: true, Reason: "error_ratio significantly worse than baseline (score 0.40)",
			Signals: []verdict.SignalResult{
				{Name: "request_rate", Kind: verdict.KindTraffic, Status: verdict.StatusPass, Baseline: fp(300), Canary: fp(920.0 / 3), Samples: [2]int{3, 15}, Reason: "920 canary requests analysed", Query: "sum(x)"},
				{Name: "error_ratio", Kind: verdict.KindRatio, Direction: verdict.HigherIsWorse, Status: verdict.StatusFail, Weight: 2, Baseline: fp(0.0091), Canary: fp(0.041),
					Counts: counts(38, 920, 41, 4500), PValue: fp(0.00012), EffectSize: fp(3.5), Reason: "error ratio 4.1% vs 0.91%", Query: `err{version="v2"}`},
				{Name: "latency_p99", Kind: verdict.KindCompare, Direction: verdict.HigherIsWorse, Status: verdict.StatusNoData, Reason: "2 canary and 20 baseline samples, 4 each needed", Query: "p99"},
				{Name: "log_error_ratio", Kind: verdict.KindRatio, Status: verdict.StatusNoData, Reason: "no log records", Query: "logs"},
			}},
		ErrorLogs: []verdict.LogLine{{Body: "ledger write timed out", Count: 1700, New: true, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"}},
		// The client and the server span of one trace are one example.
		ErrorTraces: []verdict.TraceRef{
			{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Span: "POST /orders", Message: "ledger write timed out"},
			{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Span: "ledger.Write", Message: "timeout"},
			{TraceID: "5c0a3f3577b34da6a3ce929d0e0e4737", Span: "POST /orders", Message: "ledger write timed out"},
		},
	}
	promote := verdict.Verdict{
		ID: "9e1b", Service: "checkout", Version: "v2", Baseline: "v1", BaselineMode: "concurrent",
		Start: at.Add(-10 * time.Minute), EvaluatedAt: at, TrafficSeconds: 600, WindowSeconds: 600,
		Judgement: verdict.Judgement{Decision: verdict.Promote, Score: 1, Final: true, Reason: "no signal worse than baseline beyond tolerance (score 1.00)",
			Signals: []verdict.SignalResult{
				{Name: "request_rate", Kind: verdict.KindTraffic, Status: verdict.StatusPass, Baseline: fp(150), Canary: fp(150), Samples: [2]int{40, 80}},
				{Name: "error_ratio", Kind: verdict.KindRatio, Status: verdict.StatusPending, Weight: 2, Counts: counts(58, 6000, 119, 12000), Baseline: fp(119.0 / 12000), Canary: fp(58.0 / 6000), EffectSize: fp(-0.025), Reason: "not significantly worse"},
				{Name: "latency_p50", Kind: verdict.KindCompare, Status: verdict.StatusPass, Baseline: fp(0.0402), Canary: fp(0.0398), EffectSize: fp(-0.01), Reason: "within tolerance"},
			}},
	}
	waiting := verdict.Verdict{Service: "cart", Version: "v9", Baseline: "v8", BaselineMode: "before", TrafficSeconds: 20, WindowSeconds: 300,
		Judgement: verdict.Judgement{Decision: verdict.Inconclusive, NeedSecs: 40, Reason: "only 90 canary requests so far, 200 needed"}}
	// The engine words each verdict it returns (Summary, each signal's Text).
	for _, v := range []*verdict.Verdict{&rollback, &promote, &waiting} {
		verdict.Explain(v)
	}
	// A verdict stored before verdicts carried words.
	old := rollback
	old.Summary = ""
	old.Signals = append([]verdict.SignalResult(nil), rollback.Signals...)
	for i := range old.Signals {
		old.Signals[i].Text = ""
	}
	for name, tc := range map[string]struct {
		v        verdict.Verdict
		timedOut bool
	}{"rollback": {rollback, false}, "promote": {promote, false}, "timed-out": {waiting, true}, "unworded": {old, false}} {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			renderVerdict(&b, &tc.v, tc.timedOut)
			golden := filepath.Join("testdata", "verify-"+name+".golden")
			if updateGolden() {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(b.Bytes(), want) {
				t.Errorf("report differs from %s:\n%s", golden, b.String())
			}
		})
	}
}
