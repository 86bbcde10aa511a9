package ui

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vigilhq/vigil/deploy"
	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/plain"
)

// chartTimeout bounds the queries of one verdict page's charts.
const chartTimeout = 10 * time.Second

// maxChartPoints bounds a chart's resolution.
const maxChartPoints = 600

type verdictPage struct {
	ID, Service, Environment, Version, Baseline string
	Decision, Class                             string
	Final                                       bool
	Headline                                    string
	Analysed                                    string
	Need                                        string
	Progress                                    string
	Evaluated, Started                          string
	WindowOver                                  bool
	Signals                                     []signalRow
	Logs                                        []logRow
	Traces                                      []traceRow
	TraceLinks                                  bool
	Actions                                     []actionRow
	NoAction                                    string
	Deployment                                  *deploymentRow
}

type signalRow struct {
	Name, Kind           string
	Status, StatusClass  string
	Baseline, New        string
	Change, Detail       string
	Critical             bool
	GraphURL             string
	BaselineGraphURL     string
	Chart                *svgChart
	History              *svgChart
	Crossed              string
	Query, BaselineQuery string
}

type logRow struct {
	Count    string
	Body     string
	New      bool
	TraceID  string
	TraceURL string
}

type traceRow struct {
	TraceID, TraceURL, Span, Message string
}

type actionRow struct {
	At, Kind, Target, Result, Message, Principal string
	Class                                        string
}

func statusClass(s string) string {
	switch s {
	case "ok", "ok at window end":
		return "ok"
	case "FAIL", "suspect":
		return "bad"
	case "no data":
		return "none"
	}
	return "wait"
}

func (u *UI) verdict(r *http.Request) (string, any, int) {
	id := r.PathValue("id")
	v, ok := u.cfg.Deployments.Verdict(id)
	if !ok {
		return "error", errorData("No such verdict", fmt.Sprintf("There is no verdict %q: verdicts of running verifications are kept in memory for a day, final ones in the deployments file (deploy.max_deployments, deploy.retention).", id)), http.StatusNotFound
	}
	decision, class := decisionOf(&v)
	p := verdictPage{
		ID: v.ID, Service: v.Service, Environment: v.Environment, Version: v.Version, Baseline: v.Baseline,
		Decision: decision, Class: class, Final: v.Final, Headline: plain.Summary(&v), Analysed: plain.Analysed(&v),
		Evaluated: v.EvaluatedAt.UTC().Format(time.RFC3339), Started: v.Start.UTC().Format(time.RFC3339),
		WindowOver: plain.WindowOver(&v) && plain.HasUndecided(&v),
		TraceLinks: u.cfg.TraceURLTemplate != "",
	}
	if !v.Final {
		p.Need = plain.Needed(&v)
		p.Progress = plain.Progress(&v)
	}
	start, end := chartRange(&v)
	ctx, cancel := context.WithTimeout(r.Context(), chartTimeout)
	defer cancel()
	for _, s := range v.Signals {
		b, n := plain.SignalValues(&v, s)
		st := plain.Status(&v, s)
		row := signalRow{Name: s.Name, Kind: string(s.Kind), Status: st, StatusClass: statusClass(st), Baseline: b, New: n,
			Change: plain.ChangeOf(s), Detail: plain.Detail(&v, s), Critical: s.Critical, Query: s.Query, BaselineQuery: s.BaselineQuery}
		if s.Query != "" {
			row.GraphURL = graphURL(s.Query, start, end)
		}
		if s.BaselineQuery != "" {
			row.BaselineGraphURL = graphURL(s.BaselineQuery, start, end)
		}
		if s.Kind != verdict.KindAlert && s.Query != "" {
			c := u.signalChart(ctx, &v, s, start, end)
			row.Chart = &c
		}
		if h, crossed, ok := historyChart(&v, s); ok {
			row.History, row.Crossed = &h, crossed
		}
		p.Signals = append(p.Signals, row)
	}
	for _, l := range v.ErrorLogs {
		p.Logs = append(p.Logs, logRow{Count: plain.Count(float64(l.Count)), Body: l.Body, New: l.New, TraceID: l.TraceID, TraceURL: u.TraceURL(l.TraceID)})
	}
	for _, t := range plain.TraceExamples(v.ErrorTraces) {
		p.Traces = append(p.Traces, traceRow{TraceID: t.TraceID, TraceURL: u.TraceURL(t.TraceID), Span: t.Span, Message: t.Message})
	}
	u.actions(&p, &v)
	return "verdict", p, http.StatusOK
}

// actions finds the deployment of the verdict and what was done about it.
func (u *UI) actions(p *verdictPage, v *verdict.Verdict) {
	for _, d := range u.cfg.Deployments.Deployments(v.Service, v.Environment, listLimit) {
		if d.Version != v.Version {
			continue
		}
		p.Deployment = &deploymentRow{Started: plain.Ago(d.StartedAt, u.now()), StartedAt: d.StartedAt.UTC().Format(time.RFC3339),
			Service: d.Service, Environment: d.Environment, Version: d.Version, Previous: d.PreviousVersion,
			Commit: d.Commit, Pipeline: d.Pipeline, URL: d.URL}
		for _, a := range d.Actions {
			if a.Verdict == v.ID {
				p.Actions = append(p.Actions, actionRowOf(a))
			}
		}
		break
	}
	if len(p.Actions) > 0 {
		return
	}
	switch {
	case !v.Final:
		p.NoAction = "None yet: the verification is running."
	case v.Decision == verdict.Rollback:
		p.NoAction = "No rollback action was taken: Vigil acts only for catalog services with rollback.automatic, and only when requests are authenticated. Roll back through your pipeline."
	default:
		p.NoAction = "None needed."
	}
}

func actionRowOf(a deploy.ActionRecord) actionRow {
	row := actionRow{At: a.At.UTC().Format(time.RFC3339), Kind: a.Kind, Target: a.Target, Message: a.Message, Principal: a.Principal}
	switch {
	case a.Refused != "":
		row.Result, row.Class = "refused: "+string(a.Refused), "wait"
	case a.OK:
		row.Result, row.Class = "done", "ok"
	default:
		row.Result, row.Class = "failed", "bad"
	}
	return row
}

// chartRange is the time a verdict's charts cover: the analysis, and as
// much time before the deploy again (at least a minute), so that the
// baseline's history shows.
func chartRange(v *verdict.Verdict) (time.Time, time.Time) {
	end := v.EvaluatedAt
	if lim := v.Start.Add(time.Duration(v.WindowSeconds * float64(time.Second))); v.WindowSeconds > 0 && end.After(lim) {
		end = lim
	}
	span := end.Sub(v.Start)
	if span < time.Minute {
		span = time.Minute
	}
	return v.Start.Add(-span / 2), end
}

// signalChart draws a signal of the new version against its baseline.
func (u *UI) signalChart(ctx context.Context, v *verdict.Verdict, s verdict.SignalResult, start, end time.Time) svgChart {
	step := u.cfg.Step
	if n := end.Sub(start) / step; n > maxChartPoints {
		step = end.Sub(start) / maxChartPoints
	}
	format, scale, title := valueFormat(s)
	c := chart{Title: title, Format: format, Start: start, End: end, Step: step, Marker: v.Start, MarkerLabel: v.Version + " starts"}
	for _, q := range []struct{ expr, name string }{{s.Query, v.Version + " (new)"}, {s.BaselineQuery, v.Baseline + " (baseline)"}} {
		if q.expr == "" {
			continue
		}
		res, err := u.cfg.Query.QueryRange(ctx, q.expr, start, end, step)
		if err != nil {
			return svgChart{Title: title, Empty: "query failed: " + err.Error()}
		}
		merged := Series{Name: q.name}
		for _, r := range res {
			merged.Points = append(merged.Points, r.Points...)
		}
		for i := range merged.Points {
			merged.Points[i].V *= scale(step)
		}
		c.Series = append(c.Series, merged)
	}
	return c.layout()
}

// valueFormat is how a signal's values are written on its chart: requests
// per step become requests per second.
func valueFormat(s verdict.SignalResult) (format func(float64) string, scale func(time.Duration) float64, title string) {
	one := func(time.Duration) float64 { return 1 }
	switch {
	case s.Kind == verdict.KindTraffic:
		return func(v float64) string { return plain.Rate(v, "req") },
			func(step time.Duration) float64 { return 1 / step.Seconds() }, "requests per second"
	case s.Kind == verdict.KindRatio:
		return plain.Percent, one, "share of requests, per step"
	case plain.IsDuration(s.Name):
		return plain.Seconds, one, "per step"
	}
	return plain.Number, one, "per step"
}

// graphURL is the /graph page drawing expr from start to end.
func graphURL(expr string, start, end time.Time) string {
	q := url.Values{"g0.expr": {expr}, "g0.tab": {"0"}}
	if end.After(start) {
		q.Set("g0.range_input", fmt.Sprintf("%ds", int(end.Sub(start).Seconds()+0.5)))
		q.Set("g0.end_input", end.UTC().Format(time.RFC3339))
	}
	return "/graph?" + q.Encode()
}

// short cuts a long string for a table cell.
func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.TrimSpace(s[:n-1]) + "…"
}

// historyChart draws a signal as the verdict judged it at each step: the
// new version's and the baseline's values so far (for a ratio signal the
// ratio of all the counts so far), and says when it crossed its line.
func historyChart(v *verdict.Verdict, s verdict.SignalResult) (svgChart, string, bool) {
	if len(s.History) < 2 || s.Kind == verdict.KindTraffic || s.Kind == verdict.KindAlert {
		return svgChart{}, "", false
	}
	format, _, _ := valueFormat(s)
	c := chart{Title: "as judged at each step (all the data so far)", Format: format,
		Start: s.History[0].At, End: s.History[len(s.History)-1].At}
	canary, baseline := Series{Name: v.Version + " (new)"}, Series{Name: v.Baseline + " (baseline)"}
	crossed := ""
	for _, st := range s.History {
		if st.Canary != nil {
			canary.Points = append(canary.Points, Point{T: st.At, V: *st.Canary})
		}
		if st.Baseline != nil {
			baseline.Points = append(baseline.Points, Point{T: st.At, V: *st.Baseline})
		}
		if crossed == "" && (st.Status == verdict.StatusFail || st.Status == verdict.StatusPass) {
			what := "failed"
			if st.Status == verdict.StatusPass {
				what = "passed"
			}
			crossed = fmt.Sprintf("%s at %s, %s after the first sample", what, st.At.UTC().Format("15:04:05"), plain.Duration(st.At.Sub(s.History[0].At)))
			c.Marker, c.MarkerLabel = st.At, what
		}
	}
	if d := c.End.Sub(c.Start); d > 0 {
		c.Step = d / time.Duration(len(s.History)-1)
	}
	c.Series = []Series{canary, baseline}
	return c.layout(), crossed, true
}
