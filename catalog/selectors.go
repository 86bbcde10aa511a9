package catalog

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/vigilhq/vigil/internal/semconv"
)

// Querier runs an instant PromQL query and returns the label sets of the
// result's series (the embedded engine at serve time, a server's query API
// for `vigil check config --server`).
type Querier interface {
	LabelSets(ctx context.Context, expr string) ([]map[string]string, error)
}

// SelectorMismatch is a catalog service whose selector matches none of the
// span metrics its service sends: every signal, rule and panel of it then
// selects nothing — typically a namespace no sender sets (the resource
// attribute service.namespace) or an environment spelled differently.
type SelectorMismatch struct {
	Service  Service
	Selector string
	// Seen are the namespace and environment (and the labels of the
	// catalog's matchers) the service's span metrics do carry.
	Seen []map[string]string
}

func (m SelectorMismatch) String() string {
	var seen []string
	for _, ls := range m.Seen {
		keys := make([]string, 0, len(ls))
		for k := range ls {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s=%q", k, ls[k]))
		}
		seen = append(seen, "{"+strings.Join(parts, ", ")+"}")
	}
	return fmt.Sprintf("catalog service %s (%s): its selector {%s} matches none of its span metrics, which carry %s: the verdict's signals, the rules and the dashboards of this service select nothing. Set the resource attributes service.namespace and deployment.environment.name in the service's telemetry to match the catalog, or change the catalog",
		m.Service.Name, m.Service.Environment, m.Selector, strings.Join(seen, " or "))
}

// lookback is how far back a selector check looks for span metrics.
const lookback = "10m"

// CheckSelectors finds the services whose selector matches none of the span
// metrics their service sends, with two instant queries per service. A
// service that sends nothing at all is no mismatch (it may have no traffic).
func CheckSelectors(ctx context.Context, c *Catalog, q Querier) ([]SelectorMismatch, error) {
	var out []SelectorMismatch
	for _, s := range c.Services {
		m, err := CheckSelector(ctx, s, q)
		if err != nil {
			return out, err
		}
		if m != nil {
			out = append(out, *m)
		}
	}
	return out, nil
}

// CheckSelector checks one service (nil: its selector matches, or the
// service sends no span metrics).
func CheckSelector(ctx context.Context, s Service, q Querier) (*SelectorMismatch, error) {
	sel := s.Selector()
	matched, err := q.LabelSets(ctx, fmt.Sprintf("count(last_over_time(%s{%s}[%s]))", semconv.SpanCalls, sel, lookback))
	if err != nil {
		return nil, fmt.Errorf("check the selector of %s: %w", s.Name, err)
	}
	if len(matched) > 0 {
		return nil, nil
	}
	by := append([]string{semconv.LabelNamespace, semconv.LabelEnvironment}, s.MatcherLabels()...)
	seen, err := q.LabelSets(ctx, fmt.Sprintf("count by (%s) (last_over_time(%s{service=%q}[%s]))", strings.Join(by, ", "), semconv.SpanCalls, s.Name, lookback))
	if err != nil {
		return nil, fmt.Errorf("check the selector of %s: %w", s.Name, err)
	}
	if len(seen) == 0 {
		return nil, nil
	}
	const maxSeen = 5
	if len(seen) > maxSeen {
		seen = seen[:maxSeen]
	}
	for _, ls := range seen {
		for _, l := range by {
			if _, ok := ls[l]; !ok {
				ls[l] = ""
			}
		}
	}
	return &SelectorMismatch{Service: s, Selector: sel, Seen: seen}, nil
}
