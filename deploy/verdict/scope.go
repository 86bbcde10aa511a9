package verdict

import (
	"slices"

	promModel "github.com/prometheus/common/model"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// SeriesLabels names, for each metric whose labels are known (the series
// Vigil derives itself, such as log_records_total), every label its series
// can carry. A catalog matcher on any other label can only make a selector
// of that metric match nothing, so the engine leaves it out of that
// selector: with the catalog's cluster="eu-1", log_records_total without a
// cluster dimension counts the version's log records of every cluster
// rather than none. Metrics not listed keep every matcher.
type SeriesLabels map[string][]string

// scope removes from every selector of a listed metric in expr the catalog
// matchers (same label, type and value) on labels the metric cannot carry.
// expr comes back unchanged when nothing is removed or it does not parse
// (running it reports the error).
func (sl SeriesLabels) scope(expr string, catalog []*labels.Matcher) string {
	if len(sl) == 0 || len(catalog) == 0 {
		return expr
	}
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return expr
	}
	changed := false
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		carried, ok := sl[metricName(vs)]
		if !ok {
			return nil
		}
		kept := vs.LabelMatchers[:0:0]
		for _, m := range vs.LabelMatchers {
			if !slices.Contains(carried, m.Name) && m.Name != promModel.MetricNameLabel && isCatalog(m, catalog) {
				changed = true
				continue
			}
			kept = append(kept, m)
		}
		vs.LabelMatchers = kept
		return nil
	})
	if !changed {
		return expr
	}
	return e.String()
}

func metricName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == promModel.MetricNameLabel && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

func isCatalog(m *labels.Matcher, catalog []*labels.Matcher) bool {
	for _, c := range catalog {
		if c.Name == m.Name && c.Type == m.Type && c.Value == m.Value {
			return true
		}
	}
	return false
}

// catalogMatchers parses a request's extra matchers (nil when there are
// none or they do not parse: the catalog validates them).
func catalogMatchers(s string) []*labels.Matcher {
	if s == "" {
		return nil
	}
	ms, err := parser.NewParser(parser.Options{}).ParseMetricSelector("{" + s + "}")
	if err != nil {
		return nil
	}
	return ms
}
