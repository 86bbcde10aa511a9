package main

import (
	"fmt"
	"io"
	"math"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/plain"
)

// report writes a verdict as a person reads it: the decision and why in
// plain words, a table of the signals with their numbers in units, the
// evidence, and where to look further (the verdict's page in Vigil's web
// UI, its queries on /graph).
type report struct {
	// server is Vigil's URL, for links (none when empty).
	server string
	// explain adds, per signal, how it was judged and its queries.
	explain bool
}

// renderVerdict writes the report of v without links: what the demo and
// the golden tests print.
func renderVerdict(w io.Writer, v *verdict.Verdict, timedOut bool) {
	report{}.write(w, v, timedOut)
}

func (r report) write(w io.Writer, v *verdict.Verdict, timedOut bool) {
	decision := strings.ToUpper(string(v.Decision))
	if !v.Final {
		decision = "NO DECISION YET"
	}
	if timedOut {
		decision += " (gave up waiting)"
	}
	env := ""
	if v.Environment != "" {
		env = " in " + v.Environment
	}
	fmt.Fprintf(w, "%s %s%s: %s\n", v.Service, v.Version, env, decision)
	fmt.Fprintf(w, "  %s\n", headline(v))
	fmt.Fprintf(w, "  %s\n", analysed(v))
	if v.Final && v.Decision == verdict.Promote && hasUndecided(v) {
		fmt.Fprintln(w, "  signals marked \"ok at window end\" were not shown to be within tolerance early, and were not worse when the window ended")
	}
	if !v.Final {
		if need := needLine(v); need != "" {
			fmt.Fprintf(w, "  %s\n", need)
		}
	}
	fmt.Fprintln(w)
	if len(v.Signals) == 0 {
		fmt.Fprintln(w, "No signal sampled yet.")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(v.Signals) > 0 {
		fmt.Fprintf(tw, "SIGNAL\tSTATUS\t%s (BASELINE)\t%s (NEW)\tCHANGE\tDETAIL\n", strings.ToUpper(v.Baseline), strings.ToUpper(v.Version))
	}
	for _, s := range v.Signals {
		b, c := signalValues(v, s)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, statusWord(v, s), b, c, changeCell(s), signalDetail(s))
	}
	_ = tw.Flush()
	if len(v.ErrorLogs) > 0 {
		fmt.Fprintf(w, "\nTop error logs of %s:\n", v.Version)
		for _, l := range v.ErrorLogs {
			mark := ""
			if l.New {
				mark = " [new]"
			}
			trace := ""
			if l.TraceID != "" {
				trace = "  trace " + l.TraceID
			}
			fmt.Fprintf(w, "  %4s× %s%s%s\n", plain.Count(float64(l.Count)), truncate(l.Body, 100), mark, trace)
		}
	}
	if traces := oneExamplePerTrace(v.ErrorTraces); len(traces) > 0 {
		fmt.Fprintf(w, "\nExample error traces of %s:\n", v.Version)
		for _, tr := range traces {
			fmt.Fprintf(w, "  %s  %s  %s\n", tr.TraceID, tr.Span, tr.Message)
		}
	}
	if r.explain && len(v.Signals) > 0 {
		r.writeExplanation(w, v)
	}
	if r.server != "" && v.ID != "" {
		fmt.Fprintf(w, "\nVerdict page: %s/verdicts/%s\n", strings.TrimSuffix(r.server, "/"), url.PathEscape(v.ID))
	}
}

// writeExplanation is --explain: per signal, the test and its numbers, and
// its queries with a link to draw them.
func (r report) writeExplanation(w io.Writer, v *verdict.Verdict) {
	fmt.Fprintln(w, "\nHow each signal was judged:")
	for _, s := range v.Signals {
		fmt.Fprintf(w, "\n  %s (%s", s.Name, kindWord(s.Kind))
		if s.Critical {
			fmt.Fprint(w, ", critical")
		}
		if s.Weight > 0 {
			fmt.Fprintf(w, ", weight %s", plain.Number(s.Weight))
		}
		fmt.Fprintf(w, "): %s\n", s.Reason)
		if s.Samples != [2]int{} {
			fmt.Fprintf(w, "    samples: %s of %s, %s of %s\n", plain.Count(float64(s.Samples[0])), v.Version, plain.Count(float64(s.Samples[1])), v.Baseline)
		}
		if s.PValue != nil {
			fmt.Fprintf(w, "    p-value %s", plain.Number(*s.PValue))
			if s.LogLR != nil {
				fmt.Fprintf(w, ", likelihood ratio %s to 1 for a regression", plain.Number(math.Exp(*s.LogLR)))
			}
			fmt.Fprintln(w)
		}
		if s.Query != "" {
			fmt.Fprintf(w, "    query (%s): %s\n", v.Version, s.Query)
			if l := r.graphLink(s.Query, v); l != "" {
				fmt.Fprintf(w, "      %s\n", l)
			}
		}
		if s.BaselineQuery != "" {
			fmt.Fprintf(w, "    query (%s): %s\n", v.Baseline, s.BaselineQuery)
		}
	}
}

// graphLink draws expr over the verdict's analysis on Vigil's /graph page.
func (r report) graphLink(expr string, v *verdict.Verdict) string {
	if r.server == "" {
		return ""
	}
	return strings.TrimSuffix(r.server, "/") + "/graph?" + graphQuery(expr, v.Start, v.EvaluatedAt)
}

// graphQuery is the query string of a /graph link (Prometheus's g0.*
// parameters) drawing expr from start to end.
func graphQuery(expr string, start, end time.Time) string {
	q := url.Values{"g0.expr": {expr}, "g0.tab": {"0"}}
	if !start.IsZero() && end.After(start) {
		q.Set("g0.range_input", fmt.Sprintf("%ds", int(end.Sub(start).Round(time.Second).Seconds())+60))
		q.Set("g0.end_input", end.UTC().Format(time.RFC3339))
	}
	return q.Encode()
}

// headline is the verdict in one sentence.
func headline(v *verdict.Verdict) string {
	return v.Reason
}

// analysed says what was compared and how much traffic time it took.
func analysed(v *verdict.Verdict) string {
	mode := "running alongside"
	if v.BaselineMode == "before" {
		mode = "before the deploy"
	}
	s := fmt.Sprintf("compared with %s (%s): %s of traffic analysed, of a %s window",
		v.Baseline, mode, seconds(v.TrafficSeconds), seconds(v.WindowSeconds))
	if req, ok := canaryRequests(v); ok {
		s += ", " + plain.Plural(req, "request")
		if v.TrafficSeconds > 0 {
			s += " (" + plain.Rate(req/v.TrafficSeconds, "req") + ")"
		}
	}
	return s
}

// needLine says how much more traffic a decision needs, at the current rate.
func needLine(v *verdict.Verdict) string {
	if v.NeedSecs <= 0 {
		return ""
	}
	s := "needs about " + seconds(v.NeedSecs) + " more traffic"
	if req, ok := canaryRequests(v); ok && v.TrafficSeconds > 0 && req > 0 {
		s += fmt.Sprintf(" (about %s at the current rate)", plain.Plural(math.Ceil(v.NeedSecs*req/v.TrafficSeconds), "request"))
	}
	return s
}

func seconds(s float64) string {
	return plain.Duration(time.Duration(s * float64(time.Second)))
}

// canaryRequests is how many requests of the new version were analysed: the
// total of a ratio signal over requests, else the traffic signal's mean
// times its samples.
func canaryRequests(v *verdict.Verdict) (float64, bool) {
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

func baselineRequests(v *verdict.Verdict) (float64, bool) {
	for _, s := range v.Signals {
		if s.Kind == verdict.KindRatio && s.Counts != nil {
			return s.Counts[1].Total, true
		}
	}
	return 0, false
}

func hasUndecided(v *verdict.Verdict) bool {
	for _, s := range v.Signals {
		if s.Status == verdict.StatusPending && s.Finding != verdict.FindingSuspect {
			return true
		}
	}
	return false
}

// statusWord is a signal's status as the report says it: never "pending"
// next to a final decision.
func statusWord(v *verdict.Verdict, s verdict.SignalResult) string {
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
		case v.Final:
			return "ok at window end"
		}
		return "undecided"
	}
	return string(s.Status)
}

func kindWord(k verdict.Kind) string {
	switch k {
	case verdict.KindRatio:
		return "a share of requests, sequential test on the counts"
	case verdict.KindTraffic:
		return "traffic, not scored"
	case verdict.KindAlert:
		return "firing alerts"
	}
	return "compared per step, Mann-Whitney U test"
}

// signalValues are the baseline's and the new version's values with units.
func signalValues(v *verdict.Verdict, s verdict.SignalResult) (string, string) {
	switch s.Kind {
	case verdict.KindTraffic:
		c, b := "-", "-"
		if req, ok := canaryRequests(v); ok {
			c = plain.Plural(req, "request")
			if v.TrafficSeconds > 0 {
				c += " (" + plain.Rate(req/v.TrafficSeconds, "req") + ")"
			}
		}
		if req, ok := baselineRequests(v); ok {
			b = plain.Plural(req, "request")
		}
		return b, c
	case verdict.KindAlert:
		if s.Status == verdict.StatusFail {
			return "-", "firing"
		}
		return "-", "none firing"
	case verdict.KindRatio:
		if s.Counts != nil {
			return ratioCell(s.Counts[1]), ratioCell(s.Counts[0])
		}
		return percentPtr(s.Baseline), percentPtr(s.Canary)
	}
	f := func(p *float64) string {
		if p == nil {
			return "-"
		}
		if isDuration(s.Name) {
			return plain.Seconds(*p)
		}
		return plain.Number(*p)
	}
	return f(s.Baseline), f(s.Canary)
}

// ratioCell is "4.1 % (38 of 920)".
func ratioCell(c verdict.Counts) string {
	if c.Total <= 0 {
		return "no requests"
	}
	return fmt.Sprintf("%s (%s of %s)", plain.Percent(c.Bad/c.Total), plain.Count(c.Bad), plain.Count(c.Total))
}

func percentPtr(p *float64) string {
	if p == nil {
		return "-"
	}
	return plain.Percent(*p)
}

// isDuration reports whether a signal's values are seconds (latencies).
func isDuration(name string) bool {
	return strings.Contains(name, "latency") || strings.HasSuffix(name, "_seconds") || strings.Contains(name, "duration")
}

func changeCell(s verdict.SignalResult) string {
	if s.EffectSize == nil || s.Kind == verdict.KindTraffic {
		return "-"
	}
	return plain.Change(*s.EffectSize)
}

// signalDetail is the reason a signal has its status.
func signalDetail(s verdict.SignalResult) string {
	return s.Reason
}

// oneExamplePerTrace keeps the first error span of each trace: a trace's
// client and server spans are one example.
func oneExamplePerTrace(ts []verdict.TraceRef) []verdict.TraceRef {
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

// progressLine is one line of progress while a verification runs: how much
// traffic was analysed, which way each undecided signal leans, and how much
// more traffic a decision needs.
func progressLine(v *verdict.Verdict) string {
	parts := []string{fmt.Sprintf("%s %s vs %s: %s of %s analysed", v.Service, v.Version, v.Baseline, seconds(v.TrafficSeconds), seconds(v.WindowSeconds))}
	if req, ok := canaryRequests(v); ok {
		parts[0] += ", " + plain.Plural(req, "request")
	}
	var lean []string
	for _, s := range v.Signals {
		if w := leaning(s); w != "" {
			lean = append(lean, s.Name+" "+w)
		}
	}
	if len(lean) > 0 {
		parts = append(parts, strings.Join(lean, ", "))
	} else if v.Reason != "" {
		parts = append(parts, v.Reason)
	}
	if need := needLine(v); need != "" {
		parts = append(parts, need)
	}
	return strings.Join(parts, "; ")
}

// leaning is which way a scored signal points so far ("" for the traffic).
func leaning(s verdict.SignalResult) string {
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
	if s.Finding == verdict.FindingSuspect {
		return "leaning rollback"
	}
	if s.EffectSize != nil && *s.EffectSize <= 0 {
		return "leaning promote"
	}
	return "undecided"
}
