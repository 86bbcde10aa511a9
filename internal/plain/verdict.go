package plain

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/vigilhq/vigil/deploy/verdict"
)

// The words of a verdict, shared by `vigil verify`, `vigil verdicts show`
// and the web UI's verdict page.

// secs writes seconds as a duration.
func secs(s float64) string {
	return Duration(time.Duration(s * float64(time.Second)))
}

// CanaryRequests is how many requests of the new version were analysed: the
// total of a ratio signal over requests, else the traffic signal's mean
// times its samples.
func CanaryRequests(v *verdict.Verdict) (float64, bool) {
	for _, s := range v.Signals {
		if s.Kind == verdict.KindRatio && s.Counts != nil {
			return s.Counts[0].Total, true
		}
	}
	for _, s := range v.Signals {
		if s.Kind == verdict.KindTraffic && s.Canary != nil {
			return *s.Canary * float64(s.Samples[0]), true
		}
	}
	return 0, false
}

// BaselineRequests is how many requests of the baseline were analysed.
func BaselineRequests(v *verdict.Verdict) (float64, bool) {
	for _, s := range v.Signals {
		if s.Kind == verdict.KindRatio && s.Counts != nil {
			return s.Counts[1].Total, true
		}
	}
	return 0, false
}

// WindowOver reports whether the verdict was reached at the end of its
// window (rather than early).
func WindowOver(v *verdict.Verdict) bool {
	return v.Final && v.WindowSeconds > 0 && v.TrafficSeconds >= v.WindowSeconds
}

// HasUndecided reports whether a signal was still undecided (not suspect).
func HasUndecided(v *verdict.Verdict) bool {
	for _, s := range v.Signals {
		if s.Status == verdict.StatusPending && s.Finding != verdict.FindingSuspect {
			return true
		}
	}
	return false
}

// Status is a signal's status as the report says it: never "pending"
// next to a final decision.
func Status(v *verdict.Verdict, s verdict.SignalResult) string {
	switch s.Status {
	case verdict.StatusPass:
		return "ok"
	case verdict.StatusFail:
		return "FAIL"
	case verdict.StatusNoData:
		return "no data"
	case verdict.StatusPending:
		switch {
		case s.Finding == verdict.FindingSuspect:
			return "suspect"
		case s.Finding == verdict.FindingFewSamples:
			return "too few samples"
		case WindowOver(v):
			return "ok at window end"
		}
		return "undecided"
	}
	return string(s.Status)
}

// SignalValues are the baseline's and the new version's values with units.
func SignalValues(v *verdict.Verdict, s verdict.SignalResult) (string, string) {
	switch s.Kind {
	case verdict.KindTraffic:
		c, b := "-", "-"
		if req, ok := CanaryRequests(v); ok {
			c = Plural(req, "request")
		}
		if req, ok := BaselineRequests(v); ok {
			b = Plural(req, "request")
		}
		return b, c
	case verdict.KindAlert:
		if s.Status == verdict.StatusFail {
			return "-", "firing"
		}
		return "-", "none firing"
	case verdict.KindRatio:
		if s.Counts != nil {
			return RatioCell(s.Counts[1]), RatioCell(s.Counts[0])
		}
		return percentPtr(s.Baseline), percentPtr(s.Canary)
	}
	f := func(p *float64) string {
		if p == nil {
			return "-"
		}
		if IsDuration(s.Name) {
			return Seconds(*p)
		}
		return Number(*p)
	}
	return f(s.Baseline), f(s.Canary)
}

// RatioCell is "4.1 % (38 of 920)".
func RatioCell(c verdict.Counts) string {
	if c.Total <= 0 {
		return "no requests"
	}
	return fmt.Sprintf("%s (%s of %s)", Percent(c.Bad/c.Total), Count(c.Bad), Count(c.Total))
}

// percentPtr writes a share, "-" for none.
func percentPtr(p *float64) string {
	if p == nil {
		return "-"
	}
	return Percent(*p)
}

// IsDuration reports whether a signal's values are seconds (latencies).
func IsDuration(name string) bool {
	return strings.Contains(name, "latency") || strings.HasSuffix(name, "_seconds") || strings.Contains(name, "duration")
}

// ChangeOf is the relative worsening of a signal, "-" for none.
func ChangeOf(s verdict.SignalResult) string {
	if s.EffectSize == nil || s.Kind == verdict.KindTraffic {
		return "-"
	}
	return Change(*s.EffectSize)
}

// TraceExamples keeps the first error span of each trace: a trace's
// client and server spans are one example.
func TraceExamples(ts []verdict.TraceRef) []verdict.TraceRef {
	seen := map[string]bool{}
	var out []verdict.TraceRef
	for _, t := range ts {
		if seen[t.TraceID] {
			continue
		}
		seen[t.TraceID] = true
		out = append(out, t)
	}
	return out
}

// Progress is one line of progress while a verification runs: how much
// traffic was analysed, which way the signals lean, and how much more
// traffic a decision needs.
func Progress(v *verdict.Verdict) string {
	head := fmt.Sprintf("%s %s vs %s: %s of %s analysed", v.Service, v.Version, v.Baseline, secs(v.TrafficSeconds), secs(v.WindowSeconds))
	if req, ok := CanaryRequests(v); ok {
		head += ", " + Plural(req, "request")
	}
	parts := []string{head}
	groups := map[string][]string{}
	var order []string
	for _, s := range v.Signals {
		w := Leaning(s)
		if w == "" {
			continue
		}
		if _, ok := groups[w]; !ok {
			order = append(order, w)
		}
		groups[w] = append(groups[w], s.Name)
	}
	for _, w := range order {
		parts = append(parts, w+": "+strings.Join(groups[w], ", "))
	}
	if len(order) == 0 && v.Reason != "" {
		parts = append(parts, v.Reason)
	}
	if need := Needed(v); need != "" {
		parts = append(parts, need)
	}
	return strings.Join(parts, "; ")
}

// Leaning is which way a scored signal points so far ("" for the traffic):
// the engine's leaning of a pending signal (verdict.SignalResult.Leaning).
func Leaning(s verdict.SignalResult) string {
	if s.Kind == verdict.KindTraffic {
		return ""
	}
	switch s.Status {
	case verdict.StatusPass:
		return "ok"
	case verdict.StatusFail:
		return "failing"
	case verdict.StatusNoData:
		return "no data"
	}
	switch {
	case s.Finding == verdict.FindingFewSamples:
		return "too few samples yet"
	case s.Leaning == verdict.LeaningPromote:
		return "leaning promote"
	case s.Leaning == verdict.LeaningRollback, s.Finding == verdict.FindingSuspect:
		return "leaning rollback"
	}
	return "undecided"
}

// Needed says how much more traffic a promotion needs at the current rate
// (the engine's estimate, verdict.Judgement.Needed); without one, how long
// until the next decision can be taken.
func Needed(v *verdict.Verdict) string {
	if n := v.Needed; n != nil && !v.Final {
		noun := "requests"
		if n.Requests == 1 {
			noun = "request"
		}
		s := fmt.Sprintf("a promotion needs about %s more %s (about %s at the current rate", Count(rough(float64(n.Requests))), noun, secs(rough(n.Seconds)))
		if left := v.WindowSeconds - v.TrafficSeconds; n.Seconds > left && left > 0 {
			s += ", more than the " + secs(left) + " left in the window"
		}
		return s + ")"
	}
	if v.NeedSecs <= 0 || v.Final {
		return ""
	}
	return "needs about " + secs(v.NeedSecs) + " more traffic"
}

// Analysed says what was compared and how much traffic time it took.
func Analysed(v *verdict.Verdict) string {
	mode := "running alongside"
	switch v.BaselineMode {
	case verdict.ModeBefore:
		mode = "before the deploy"
	case verdict.ModeNone:
		return "a first deploy, judged against its absolute bounds (SLOs) alone: " + secs(v.TrafficSeconds) + " of traffic analysed, of a " + secs(v.WindowSeconds) + " window"
	}
	s := fmt.Sprintf("compared with %s (%s): %s of traffic analysed, of a %s window",
		v.Baseline, mode, secs(v.TrafficSeconds), secs(v.WindowSeconds))
	if req, ok := CanaryRequests(v); ok {
		s += ", " + Plural(req, "request")
	}
	return s
}

// Detail says in plain words why a signal has its status: the engine's
// text (verdict.SignalResult.Text), or a few words from its status for a
// verdict stored without one.
func Detail(v *verdict.Verdict, s verdict.SignalResult) string {
	if s.Text != "" {
		return s.Text
	}
	base := v.Baseline
	switch {
	case s.Kind == verdict.KindTraffic:
		if s.Status == verdict.StatusNoData {
			return "no traffic of " + v.Version + " yet"
		}
		return "how much traffic there is; not scored"
	case s.Kind == verdict.KindAlert && s.Status == verdict.StatusFail:
		return "a critical alert fired during the analysis"
	case s.Kind == verdict.KindAlert:
		return "no critical alert fired"
	case s.Status == verdict.StatusNoData:
		if s.Kind == verdict.KindRatio {
			return "no data: nothing counted for both versions"
		}
		return fmt.Sprintf("no data: %s of %s and %s of %s so far", Plural(float64(s.Samples[0]), "sample"), v.Version, Count(float64(s.Samples[1])), base)
	case s.Status == verdict.StatusFail && s.Finding == verdict.FindingBound:
		return "beyond its absolute bound (SLO)"
	case s.Status == verdict.StatusFail:
		return "significantly worse than " + base
	case s.Status == verdict.StatusPass:
		return "no worse than " + base + " beyond its tolerance"
	case s.Finding == verdict.FindingSuspect:
		return "worse than allowed, not significantly yet"
	case WindowOver(v):
		return "not significantly worse when the window ended"
	}
	return "not decided yet"
}

// Summary is the verdict in plain words: the engine's summary
// (verdict.Verdict.Summary), or its reason for a verdict stored without one.
func Summary(v *verdict.Verdict) string {
	if v.Summary != "" {
		return v.Summary
	}
	return v.Reason
}

// rough keeps two significant digits of an estimate: 2,147 → 2,100.
func rough(v float64) float64 {
	if v < 100 {
		return math.Round(v)
	}
	p := math.Pow(10, math.Floor(math.Log10(v))-1)
	return math.Round(v/p) * p
}
