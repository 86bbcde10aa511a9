package red

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
)

// TestExpressionsParse: every fragment is valid PromQL and, whatever the
// labels kept, aggregates (so the collector label never survives).
func TestExpressionsParse(t *testing.T) {
	sel := `service="checkout",environment="production"`
	for name, expr := range map[string]string{
		"Requests":      Requests(sel, "5m"),
		"Requests by":   Requests(sel, "5m", "service", "version"),
		"Errors":        Errors(sel, "$__rate_interval", "version"),
		"ErrorRatio":    ErrorRatio(sel, "5m", "version"),
		"Latency":       Latency(0.99, sel, "5m", "version"),
		"SlowRatio":     SlowRatio(0.3, sel, "1h"),
		"LogErrors":     LogErrors(sel, "5m", "version"),
		"Logs":          Logs(sel, "5m", "severity"),
		"StepRequests":  StepRequests(sel, "15s"),
		"StepErrors":    StepErrors(sel, "15s"),
		"StepLatency":   StepLatency(0.5, sel, "15s"),
		"StepLogErrors": StepLogErrors(sel, "15s"),
	} {
		e, err := parser.NewParser(parser.Options{}).ParseExpr(strings.ReplaceAll(expr, "$__rate_interval", "1m"))
		if err != nil {
			t.Errorf("%s: %q: %v", name, expr, err)
			continue
		}
		if !aggregates(e) {
			t.Errorf("%s: %s does not sum every selector it reads", name, expr)
		}
	}
}

// aggregates reports whether every vector selector of e sits under a sum.
func aggregates(e parser.Expr) bool {
	ok := true
	var walk func(n parser.Node, summed bool)
	walk = func(n parser.Node, summed bool) {
		switch n := n.(type) {
		case *parser.AggregateExpr:
			summed = summed || n.Op == parser.SUM
		case *parser.VectorSelector:
			if !summed {
				ok = false
			}
		}
		for _, c := range parser.Children(n) {
			walk(c, summed)
		}
	}
	walk(e, false)
	return ok
}

// TestStepCounts runs the per-step forms on Prometheus's engine: three
// replicas count calls; collector c1 restarts (its counter goes from 10
// back to 2), c2 is scaled in (its series goes stale), c3 joins. Each
// step counts exactly what happened in it, as a single counter would:
// the delta of the sums would count -10 at the restart and -2 at the
// scale-in.
func TestStepCounts(t *testing.T) {
	step := StepIncrease("calls", `service="a"`, "15s")
	hist := StepHistogram("lat", `service="a"`, "15s")
	promqltest.RunTest(t, fmt.Sprintf(`
load 15s
  calls{service="a",collector="c0"} 0 10 20 30 40
  calls{service="a",collector="c1"} 0 5 10 2 7
  calls{service="a",collector="c2"} 0 1 2 stale
  calls{service="a",collector="c3"} _ _ 4 6 9
  lat{service="a",collector="c0"} {{schema:0 count:0 sum:0}} {{schema:0 count:4 sum:2 buckets:[4]}} {{schema:0 count:6 sum:3 buckets:[6]}} {{schema:0 count:1 sum:0.5 buckets:[1]}}

eval instant at 30s %[1]s
  {} 20

eval instant at 45s %[1]s
  {} 14

eval instant at 60s %[1]s
  {} 18

eval instant at 30s %[2]s
  {} {{schema:0 count:2 sum:1 buckets:[2]}}

eval instant at 45s %[2]s
  {} {{schema:0 count:1 sum:0.5 buckets:[1]}}
`, step, hist), promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery))
}
