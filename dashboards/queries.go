package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

// Query is one PromQL expression of a dashboard, where Grafana runs it.
type Query struct {
	// Kind is "panel", "variable" or "annotation".
	Kind string
	// Title is the panel title, variable name or annotation name.
	Title string
	RefID string
	// Expr is the expression with Grafana variables unexpanded. For query
	// variables it is the label_values(...) call.
	Expr string
	// Instant is true for instant (table and stat) queries.
	Instant bool
}

// Queries lists every PromQL expression of a dashboard: panel targets,
// query variables and annotations, in dashboard order.
func Queries(d Dashboard) []Query {
	var out []Query
	addPanel := func(p dashboard.Panel) {
		title := ""
		if p.Title != nil {
			title = *p.Title
		}
		for _, t := range p.Targets {
			q, ok := t.(prometheus.Dataquery)
			if !ok {
				if qp, ok2 := t.(*prometheus.Dataquery); ok2 {
					q, ok = *qp, true
				}
			}
			if !ok {
				continue
			}
			ref := ""
			if q.RefId != nil {
				ref = *q.RefId
			}
			out = append(out, Query{Kind: "panel", Title: title, RefID: ref, Expr: q.Expr, Instant: q.Instant != nil && *q.Instant})
		}
	}
	for _, p := range d.Model.Panels {
		switch {
		case p.Panel != nil:
			addPanel(*p.Panel)
		case p.RowPanel != nil:
			for _, rp := range p.RowPanel.Panels {
				addPanel(rp)
			}
		}
	}
	for _, v := range d.Model.Templating.List {
		if v.Type == "query" && v.Query != nil && v.Query.String != nil {
			out = append(out, Query{Kind: "variable", Title: v.Name, Expr: *v.Query.String, Instant: true})
		}
	}
	for _, a := range d.Model.Annotations.List {
		if a.Expr != nil {
			out = append(out, Query{Kind: "annotation", Title: a.Name, Expr: *a.Expr})
		}
	}
	return out
}
