package verdict

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/internal/semconv"
)

func TestEvaluate(t *testing.T) {
	db := newTestDB(t)
	t0 := time.Now().Add(-20 * time.Minute).Truncate(time.Minute) // the deploy
	end := t0.Add(10 * time.Minute)
	before := t0.Add(-10 * time.Minute)
	healthy := func(v string, from, to time.Time) traffic {
		return traffic{version: v, from: from, to: to, perFlush: 50, errRatio: 0.01, latBucket: -3, logErrs: 0.01}
	}
	type want struct {
		decision Decision
		failing  []string
		mode     string
		reason   string
	}
	bound := 0.05
	tests := []struct {
		name    string
		traffic []traffic
		alert   string // severity of an alert firing during the canary
		at      time.Duration
		window  time.Duration
		signals []Signal
		want    want
	}{
		{
			name:    "healthy canary is promoted at the end of the window",
			traffic: []traffic{healthy("v1", before, end), healthy("v2", t0, end)},
			at:      5 * time.Minute, window: 3 * time.Minute,
			want: want{decision: Promote, mode: "concurrent"},
		},
		{
			name: "ten times the errors rolls back",
			traffic: []traffic{healthy("v1", before, end),
				{version: "v2", from: t0, to: end, perFlush: 50, errRatio: 0.10, latBucket: -3, logErrs: 0.01}},
			at: 2 * time.Minute, window: 10 * time.Minute,
			want: want{decision: Rollback, failing: []string{"error_ratio"}},
		},
		{
			name: "four times slower rolls back",
			traffic: []traffic{healthy("v1", before, end),
				{version: "v2", from: t0, to: end, perFlush: 50, errRatio: 0.01, latBucket: -1, logErrs: 0.01}},
			at: 2 * time.Minute, window: 10 * time.Minute,
			want: want{decision: Rollback, failing: []string{"latency_p50", "latency_p99"}},
		},
		{
			name: "more error logs per request roll back",
			traffic: []traffic{healthy("v1", before, end),
				{version: "v2", from: t0, to: end, perFlush: 50, errRatio: 0.01, latBucket: -3, logErrs: 0.2}},
			at: 2 * time.Minute, window: 10 * time.Minute,
			want: want{decision: Rollback, failing: []string{"log_error_ratio"}},
		},
		{
			name:    "no canary traffic is inconclusive",
			traffic: []traffic{healthy("v1", before, end)},
			at:      2 * time.Minute, window: 5 * time.Minute,
			want: want{decision: Inconclusive, reason: "no canary traffic"},
		},
		{
			name:    "rolling update compares with the baseline before the deploy",
			traffic: []traffic{healthy("v1", before, t0), healthy("v2", t0, end)},
			at:      5 * time.Minute, window: 3 * time.Minute,
			want: want{decision: Promote, mode: "before"},
		},
		{
			name:    "a critical alert rolls back at once",
			traffic: []traffic{healthy("v1", before, end), healthy("v2", t0, end)},
			alert:   "critical",
			at:      time.Minute, window: 10 * time.Minute,
			want: want{decision: Rollback, failing: []string{"critical_alerts"}},
		},
		{
			name:    "a warning alert does not",
			traffic: []traffic{healthy("v1", before, end), healthy("v2", t0, end)},
			alert:   "warning",
			at:      5 * time.Minute, window: 3 * time.Minute,
			want: want{decision: Promote},
		},
		{
			name: "an absolute SLO bound breaks even when the baseline is as bad",
			traffic: []traffic{{version: "v1", from: before, to: end, perFlush: 50, errRatio: 0.10, latBucket: -3},
				{version: "v2", from: t0, to: end, perFlush: 50, errRatio: 0.10, latBucket: -3}},
			at: 2 * time.Minute, window: 10 * time.Minute,
			signals: append(DefaultSignals(), sloAvailability(bound)),
			want:    want{decision: Rollback, failing: []string{"slo_availability"}},
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc := "svc" + string(rune('a'+i))
			db.write(t, svc, uint64(i+1), tc.traffic...)
			if tc.alert != "" {
				db.alert(t, svc, tc.alert, t0.Add(30*time.Second), end)
			}
			e, err := New(Config{LinkBase: "http://vigil:9400"}, db, nil)
			if err != nil {
				t.Fatal(err)
			}
			req := Request{Service: svc, Environment: "production", Version: "v2", Baseline: "v1", Start: t0, Window: tc.window, Signals: tc.signals}
			v, err := e.Evaluate(context.Background(), req, t0.Add(tc.at))
			if err != nil {
				t.Fatal(err)
			}
			if v.Decision != tc.want.decision {
				t.Fatalf("decision = %s (%s), want %s\n%s", v.Decision, v.Reason, tc.want.decision, describe(v))
			}
			var failing []string
			for _, s := range v.Signals {
				if s.Status == StatusFail {
					failing = append(failing, s.Name)
				}
				if s.Query == "" || !strings.Contains(s.Link, "/api/v1/query_range?") {
					t.Errorf("signal %s has no query or link: %+v", s.Name, s)
				}
			}
			if strings.Join(failing, ",") != strings.Join(tc.want.failing, ",") {
				t.Errorf("failing signals = %v, want %v\n%s", failing, tc.want.failing, describe(v))
			}
			if tc.want.mode != "" && v.BaselineMode != tc.want.mode {
				t.Errorf("baseline mode = %s, want %s", v.BaselineMode, tc.want.mode)
			}
			if tc.want.reason != "" && !strings.Contains(v.Reason+describe(v), tc.want.reason) {
				t.Errorf("reason %q does not mention %q", v.Reason, tc.want.reason)
			}
			if v.Decision == Inconclusive && !v.Final && v.NeedSecs <= 0 {
				t.Errorf("inconclusive without saying how long to wait: %+v", v.Judgement)
			}
			// Deterministic: the same data gives the same verdict.
			again, err := e.Evaluate(context.Background(), req, t0.Add(tc.at))
			if err != nil {
				t.Fatal(err)
			}
			if describe(again) != describe(v) {
				t.Errorf("second evaluation differs:\n%s\n%s", describe(v), describe(again))
			}
		})
	}
}

// sloAvailability is the error ratio with an absolute bound, as the
// catalog's availability SLO adds it.
func sloAvailability(bound float64) Signal {
	s := DefaultSignals()[1]
	s.Name, s.Max, s.Tolerance, s.Floor, s.Weight = "slo_availability", &bound, 0, bound, 1
	return s
}

// TestEvaluateCountsFirstErrors checks that a version's first errors count:
// its error series appears only when it first fails, and the errors of that
// step are not lost to a missing "offset" sample.
func TestEvaluateCountsFirstErrors(t *testing.T) {
	db := newTestDB(t)
	t0 := time.Now().Add(-20 * time.Minute).Truncate(time.Minute)
	end := t0.Add(3 * time.Minute)
	db.write(t, "late", 1,
		traffic{version: "v1", from: t0.Add(-10 * time.Minute), to: end, perFlush: 50, errRatio: 0, latBucket: -3},
		traffic{version: "v2", from: t0, to: end, perFlush: 50, errRatio: 0.02, latBucket: -3, errorsFrom: t0.Add(62 * time.Second)})
	e, err := New(Config{}, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := t0.Add(3 * time.Minute)
	v, err := e.Evaluate(context.Background(), Request{Service: "late", Environment: "production", Version: "v2", Baseline: "v1", Start: t0, Window: 10 * time.Minute}, at)
	if err != nil {
		t.Fatal(err)
	}
	// The verdict is reached at the first step where it is final: every
	// error written until then counts.
	decided := t0.Add(time.Duration(v.TrafficSeconds) * time.Second)
	written, err := db.values(context.Background(), `sum(traces_span_metrics_calls_total{service="late",version="v2",status_code="STATUS_CODE_ERROR"})`, decided, decided, time.Second)
	if err != nil || len(written) != 1 || written[0] == 0 {
		t.Fatalf("errors written: %v %v", written, err)
	}
	for _, s := range v.Signals {
		if s.Name == "error_ratio" {
			if s.Counts == nil || s.Counts[0].Bad != written[0] {
				t.Errorf("canary errors counted %+v, want all %v written\n%s", s.Counts, written[0], describe(v))
			}
			return
		}
	}
	t.Fatal("no error_ratio signal")
}

// TestEvaluateCatalogMatchers: a catalog service with matchers on a label
// its span metrics carry (a span dimension) and its log metrics do not.
// The log error ratio must count the version's error logs: with the log
// metrics' labels known, the matcher is left out of log_records_total; the
// span signals keep it.
func TestEvaluateCatalogMatchers(t *testing.T) {
	db := newTestDB(t)
	t0 := time.Now().Add(-20 * time.Minute).Truncate(time.Minute)
	end := t0.Add(3 * time.Minute)
	eu := []string{"cluster", "eu-1"}
	db.write(t, "cart", 1,
		traffic{version: "v1", from: t0.Add(-10 * time.Minute), to: end, perFlush: 50, errRatio: 0.01, latBucket: -3, logErrs: 0.01, spanLabels: eu},
		traffic{version: "v2", from: t0, to: end, perFlush: 50, errRatio: 0.01, latBucket: -3, logErrs: 0.2, spanLabels: eu})
	at := t0.Add(3 * time.Minute)
	req := Request{Service: "cart", Environment: "production", Version: "v2", Baseline: "v1", Start: t0, Window: 10 * time.Minute, Matchers: `cluster="eu-1"`}
	for _, tc := range []struct {
		name   string
		labels SeriesLabels
		bad    float64 // canary log errors counted (-1: as written; 0: none selected, no data)
		query  string  // in the log signal's query
	}{
		{"labels unknown: the matcher selects nothing", nil, 0, `cluster="eu-1"`},
		{"log labels known", SeriesLabels{semconv.LogRecords: semconv.LogRecordLabels}, -1, `log_records_total{environment="production",service="cart",severity=~"error|fatal",version="v2"}`},
		{"log metrics with a cluster dimension", SeriesLabels{semconv.LogRecords: append([]string{"cluster"}, semconv.LogRecordLabels...)}, 0, `cluster="eu-1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := New(Config{SeriesLabels: tc.labels}, db, nil)
			if err != nil {
				t.Fatal(err)
			}
			v, err := e.Evaluate(context.Background(), req, at)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]SignalResult{}
			for _, s := range v.Signals {
				got[s.Name] = s
			}
			logs, calls := got["log_error_ratio"], got["error_ratio"]
			if !strings.Contains(logs.Query, tc.query) || !strings.Contains(calls.Query, `cluster="eu-1"`) {
				t.Errorf("queries:\n  %s\n  %s\nwant the log one to contain %s and the span one the matcher", logs.Query, calls.Query, tc.query)
			}
			if tc.bad == 0 {
				// The matcher selects no log records at all: the log
				// signal has no input, which is no data, not zero errors.
				if logs.Status != StatusNoData || logs.Counts != nil || calls.Counts == nil {
					t.Errorf("log signal %s counts %v, want no data with no counts\n%s", logs.Status, logs.Counts, describe(v))
				}
				return
			}
			if logs.Counts == nil || calls.Counts == nil {
				t.Fatalf("no counts:\n%s", describe(v))
			}
			if tc.bad < 0 {
				// The canary's samples start a step after the deploy: its
				// count is what the counter gained from its first flush, at
				// the deploy, until the verdict was reached.
				decided := t0.Add(time.Duration(v.TrafficSeconds) * time.Second)
				written, err := db.values(context.Background(), `sum(log_records_total{service="cart",version="v2"})`, t0, decided, decided.Sub(t0))
				if err != nil || len(written) != 2 || written[1] <= written[0] {
					t.Fatalf("log errors written: %v %v", written, err)
				}
				tc.bad = written[1] - written[0]
			}
			if logs.Counts[0].Bad != tc.bad {
				t.Errorf("canary log errors counted %v, want %v\n%s", logs.Counts[0].Bad, tc.bad, describe(v))
			}
			if logs.Counts[0].Total == 0 || logs.Counts[0].Total != calls.Counts[0].Total {
				t.Errorf("log signal total %v, want the requests in cluster eu-1 (%v)", logs.Counts[0].Total, calls.Counts[0].Total)
			}
			if tc.bad > 0 && (v.Decision != Rollback || logs.Status != StatusFail) {
				t.Errorf("20 times the error logs: %s, log signal %s\n%s", v.Decision, logs.Status, describe(v))
			}
		})
	}
}

func describe(v Verdict) string {
	var b strings.Builder
	b.WriteString(string(v.Decision) + " " + v.Reason + "\n")
	for _, s := range v.Signals {
		b.WriteString("  " + s.Name + " " + string(s.Status) + ": " + s.Reason + "\n")
	}
	return b.String()
}

// BenchmarkEvaluate measures one verdict (all default signals, canary and
// baseline range queries) over Vigil's storage and PromQL engine with 15
// minutes of data per version.
func BenchmarkEvaluate(b *testing.B) {
	db := newTestDB(b)
	t0 := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	db.write(b, "bench", 1,
		traffic{version: "v1", from: t0.Add(-10 * time.Minute), to: t0.Add(5 * time.Minute), perFlush: 50, errRatio: 0.01, latBucket: -3, logErrs: 0.01},
		traffic{version: "v2", from: t0, to: t0.Add(5 * time.Minute), perFlush: 50, errRatio: 0.01, latBucket: -3, logErrs: 0.01})
	e, err := New(Config{}, db, nil)
	if err != nil {
		b.Fatal(err)
	}
	req := Request{Service: "bench", Environment: "production", Version: "v2", Baseline: "v1", Start: t0, Window: 5 * time.Minute}
	for b.Loop() {
		if _, err := e.Evaluate(context.Background(), req, t0.Add(5*time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
}
