package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/vigilhq/vigil/internal/plain"
)

// graphTimeout bounds the query of the /graph page.
const graphTimeout = 30 * time.Second

// maxTableRows bounds the series listed under a graph.
const maxTableRows = 200

type graphPage struct {
	Expr     string
	Range    string
	End      string
	Step     string
	Table    bool
	Ranges   []string
	Error    string
	Chart    *svgChart
	Rows     []graphRow
	More     int
	At       string
	Ran      bool
	APIQuery string
}

type graphRow struct {
	Series, Last, Min, Max string
}

// graph runs the PromQL expression of Prometheus's /graph parameters
// (g0.expr, g0.tab, g0.range_input, g0.end_input, g0.step_input) and draws
// it, or lists its values at one time (g0.tab=1, what Alertmanager's
// "Source" links ask for). With web.grafana_url it sends the browser to
// Grafana's Explore instead.
func (u *UI) graph(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p := graphPage{Expr: strings.TrimSpace(q.Get("g0.expr")), Range: q.Get("g0.range_input"), End: q.Get("g0.end_input"),
		Step: q.Get("g0.step_input"), Table: q.Get("g0.tab") == "1", Ranges: []string{"5m", "15m", "1h", "3h", "12h", "1d", "7d"}}
	if u.cfg.GrafanaURL != "" {
		http.Redirect(w, r, u.exploreURL(p.Expr, p.Range), http.StatusFound)
		return
	}
	h := securityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := u.runGraph(r.Context(), &p)
		u.render(w, "graph", p, code)
	}))
	h.ServeHTTP(w, r)
}

// runGraph runs the page's query; it returns the page's HTTP status.
func (u *UI) runGraph(ctx context.Context, p *graphPage) int {
	if p.Range == "" {
		p.Range = "1h"
	}
	if p.Expr == "" {
		return http.StatusOK
	}
	rng, err := model.ParseDuration(p.Range)
	if err != nil || rng <= 0 {
		p.Error = fmt.Sprintf("range %q: want a duration such as 1h", p.Range)
		return http.StatusBadRequest
	}
	end := u.now()
	if p.End != "" {
		if end, err = parseTime(p.End); err != nil {
			p.Error = fmt.Sprintf("end %q: want RFC 3339 (2026-01-02T15:04:05Z), \"2026-01-02 15:04\" (UTC) or Unix seconds", p.End)
			return http.StatusBadRequest
		}
	}
	start := end.Add(-time.Duration(rng))
	step := time.Duration(rng) / 250
	if p.Step != "" {
		s, err := parseStep(p.Step)
		if err != nil || s <= 0 {
			p.Error = fmt.Sprintf("step %q: want a duration such as 15s", p.Step)
			return http.StatusBadRequest
		}
		step = s
	}
	step = max(step, time.Second)
	if n := end.Sub(start) / step; n > 11000 {
		p.Error = fmt.Sprintf("%d points per series: more than 11,000; give a larger step", n)
		return http.StatusBadRequest
	}
	if p.Table {
		start = end
	}
	p.At = end.UTC().Format(time.RFC3339)
	p.APIQuery = "/api/v1/query_range?" + url.Values{"query": {p.Expr}, "start": {strconv.FormatInt(start.Unix(), 10)},
		"end": {strconv.FormatInt(end.Unix(), 10)}, "step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}}.Encode()
	ctx, cancel := context.WithTimeout(ctx, graphTimeout)
	defer cancel()
	res, err := u.cfg.Query.QueryRange(ctx, p.Expr, start, end, step)
	if err != nil {
		p.Error = err.Error()
		return http.StatusBadRequest
	}
	p.Ran = true
	sort.Slice(res, func(i, j int) bool { return res[i].Name < res[j].Name })
	if !p.Table {
		c := chart{Format: plain.Number, Series: res, Start: start, End: end, Step: step, Width: 1200, Height: 320}.layout()
		p.Chart = &c
	}
	for i, s := range res {
		if i == maxTableRows {
			p.More = len(res) - maxTableRows
			break
		}
		row := graphRow{Series: s.Name, Last: "-", Min: "-", Max: "-"}
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, pt := range s.Points {
			if finite(pt.V) {
				lo, hi = math.Min(lo, pt.V), math.Max(hi, pt.V)
			}
		}
		if n := len(s.Points); n > 0 {
			row.Last = plain.Number(s.Points[n-1].V)
		}
		if !math.IsInf(lo, 1) {
			row.Min, row.Max = plain.Number(lo), plain.Number(hi)
		}
		p.Rows = append(p.Rows, row)
	}
	return http.StatusOK
}

func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02 15:04"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, int64(f*1e9)), nil
}

func parseStep(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := model.ParseDuration(s)
	return time.Duration(d), err
}

// exploreURL is Grafana Explore showing expr on the configured datasource.
func (u *UI) exploreURL(expr, rng string) string {
	if rng == "" {
		rng = "1h"
	}
	ds := u.cfg.GrafanaDatasourceUID
	panes := map[string]any{"vigil": map[string]any{
		"datasource": ds,
		"queries":    []map[string]any{{"refId": "A", "expr": expr, "datasource": map[string]string{"type": "prometheus", "uid": ds}}},
		"range":      map[string]string{"from": "now-" + rng, "to": "now"},
	}}
	b, _ := json.Marshal(panes)
	return strings.TrimSuffix(u.cfg.GrafanaURL, "/") + "/explore?" + url.Values{"schemaVersion": {"1"}, "panes": {string(b)}, "orgId": {"1"}}.Encode()
}
