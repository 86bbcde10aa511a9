package plain

import (
	"testing"

	"github.com/vigilhq/vigil/deploy/verdict"
)

func fp(v float64) *float64 { return &v }

func TestVerdictWords(t *testing.T) {
	counts := &[2]verdict.Counts{{Bad: 38, Total: 920}, {Bad: 41, Total: 4500}}
	running := &verdict.Verdict{Service: "checkout", Version: "v2", Baseline: "v1", TrafficSeconds: 180, WindowSeconds: 600,
		Judgement: verdict.Judgement{Decision: verdict.Inconclusive, NeedSecs: 420, Needed: &verdict.Needed{Requests: 2147, Seconds: 420}, Signals: []verdict.SignalResult{
			{Name: "request_rate", Kind: verdict.KindTraffic, Status: verdict.StatusPass},
			{Name: "error_ratio", Kind: verdict.KindRatio, Status: verdict.StatusPending, Counts: counts, EffectSize: fp(-0.1), Leaning: verdict.LeaningPromote},
			{Name: "latency_p99", Kind: verdict.KindCompare, Status: verdict.StatusPending, Finding: verdict.FindingSuspect, Baseline: fp(0.085), Canary: fp(0.12)},
			{Name: "log_error_ratio", Kind: verdict.KindRatio, Status: verdict.StatusNoData},
		}}}
	final := *running
	final.Judgement.Final, final.Judgement.Decision, final.TrafficSeconds = true, verdict.Promote, 600
	early := *running
	early.Judgement.Final, early.Judgement.Decision = true, verdict.Rollback

	for _, tc := range []struct{ name, got, want string }{
		{"progress", Progress(running), "checkout v2 vs v1: 3 min of 10 min analysed, 920 requests; leaning promote: error_ratio; leaning rollback: latency_p99; no data: log_error_ratio; a promotion needs about 2,100 more requests (about 7 min at the current rate)"},
		{"pending while running", Status(running, running.Signals[1]), "undecided"},
		{"pending in a final verdict", Status(&final, final.Signals[1]), "ok at window end"},
		{"pending in a verdict reached early", Status(&early, early.Signals[1]), "undecided"},
		{"suspect", Status(running, running.Signals[2]), "suspect"},
		{"no data", Status(running, running.Signals[3]), "no data"},
		{"ratio cell", RatioCell(counts[0]), "4.1% (38 of 920)"},
		{"analysed", Analysed(running), "compared with v1 (running alongside): 3 min of traffic analysed, of a 10 min window, 920 requests"},
		{"detail", Detail(running, running.Signals[2]), "worse than allowed, not significantly yet"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, tc.got, tc.want)
		}
	}
	b, c := SignalValues(running, running.Signals[2])
	if b != "85 ms" || c != "120 ms" {
		t.Errorf("latency values %q %q", b, c)
	}
	b, c = SignalValues(running, running.Signals[0])
	if b != "4,500 requests" || c != "920 requests" {
		t.Errorf("traffic values %q %q", b, c)
	}
	ex := TraceExamples([]verdict.TraceRef{{TraceID: "a", Span: "client"}, {TraceID: "a", Span: "server"}, {TraceID: "b"}})
	if len(ex) != 2 || ex[0].Span != "client" {
		t.Errorf("one example per trace: %+v", ex)
	}
}
