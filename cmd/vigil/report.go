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
	for _, l := range wrap(plain.Summary(v), 100) {
		fmt.Fprintf(w, "  %s\n", l)
	}
	fmt.Fprintf(w, "  %s\n", plain.Analysed(v))
	if plain.WindowOver(v) && plain.HasUndecided(v) {
		fmt.Fprintln(w, "  signals marked \"ok at window end\" were not shown to be within tolerance early, and were not worse when the window ended")
	}
	if !v.Final {
		if need := plain.Needed(v); need != "" {
			fmt.Fprintf(w, "  %s\n", need)
		}
	}
	fmt.Fprintln(w)
	if len(v.Signals) == 0 {
		fmt.Fprintln(w, "No signal sampled yet.")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(v.Signals) > 0 {
		fmt.Fprintf(tw, "SIGNAL\tSTATUS\t%s (BASELINE)\t%s (NEW)\tCHANGE\n", strings.ToUpper(v.Baseline), strings.ToUpper(v.Version))
	}
	for _, s := range v.Signals {
		b, c := plain.SignalValues(v, s)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, plain.Status(v, s), b, c, plain.ChangeOf(s))
	}
	_ = tw.Flush()
	if len(v.Signals) > 0 {
		fmt.Fprintln(w)
	}
	for _, s := range v.Signals {
		text := s.Text
		if text == "" {
			text = s.Name + ": " + plain.Detail(v, s)
		}
		for i, l := range wrap(text, 96) {
			mark := "-"
			if i > 0 {
				mark = " "
			}
			fmt.Fprintf(w, "  %s %s\n", mark, l)
		}
	}
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
	if traces := plain.TraceExamples(v.ErrorTraces); len(traces) > 0 {
		fmt.Fprintf(w, "\nExample error traces of %s:\n", v.Version)
		for _, tr := range traces {
			fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("  %s  %s  %s", tr.TraceID, tr.Span, tr.Message), " "))
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

// wrap breaks text into lines of at most width bytes, at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		switch {
		case line == "":
			line = word
		case len(line)+1+len(word) > width:
			lines = append(lines, line)
			line = word
		default:
			line += " " + word
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
