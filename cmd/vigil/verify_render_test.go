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
	rollback := verdict.Verdict{
		ID: "3f2a", Service: "payments", Environment: "production", Version: "v2", Baseline: "v1", BaselineMode: "concurrent",
		Start: at.Add(-time.Minute), EvaluatedAt: at, TrafficSeconds: 45, WindowSeconds: 300,
		Judgement: verdict.Judgement{Decision: verdict.Rollback, Score: 0.4, Final: true, Reason: "error_ratio significantly worse than baseline (score 0.40)",
			Signals: []verdict.SignalResult{
				{Name: "request_rate", Kind: verdict.KindTraffic, Status: verdict.StatusPass, Baseline: fp(150), Canary: fp(148), Reason: "444 canary requests analysed", Query: "sum(x)"},
				{Name: "error_ratio", Kind: verdict.KindCompare, Direction: verdict.HigherIsWorse, Status: verdict.StatusFail, Weight: 2, Baseline: fp(0.01), Canary: fp(0.12),
					PValue: fp(0.00012), EffectSize: fp(11), Reason: "worse by +0.11 (+1100%) (allowed +0.005 (+50%)), p=0.00012", Query: `err{version="v2"}`},
				{Name: "latency_p99", Kind: verdict.KindCompare, Direction: verdict.HigherIsWorse, Status: verdict.StatusNoData, Reason: "2 canary and 20 baseline samples, 4 each needed", Query: "p99"},
			}},
		ErrorLogs:   []verdict.LogLine{{Body: "ledger write timed out", Count: 17, New: true, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"}},
		ErrorTraces: []verdict.TraceRef{{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Span: "POST /orders", Message: "ledger write timed out"}},
	}
	waiting := verdict.Verdict{Service: "cart", Version: "v9", Baseline: "v8", BaselineMode: "before", TrafficSeconds: 20, WindowSeconds: 300,
		Judgement: verdict.Judgement{Decision: verdict.Inconclusive, NeedSecs: 40, Reason: "only 90 canary requests so far, 200 needed"}}
	for name, tc := range map[string]struct {
		v        verdict.Verdict
		timedOut bool
	}{"rollback": {rollback, false}, "timed-out": {waiting, true}} {
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
