package main

import (
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/vigilhq/vigil/deploy/verdict"
)

// The time-to-decision grid (-grid): for a few request rates of the new
// version and error ratios of the baseline, how long a healthy version takes
// to be promoted and a bad one (errors doubled) to be rolled back, with the
// default policy, step and window. docs/verdict.md quotes it.

// gridRates and gridErrors are the grid's rows and columns.
var (
	gridRates  = []float64{1, 10, 100}
	gridErrors = []float64{0.001, 0.01, 0.05}
)

// gridBaselineFactor is the baseline's traffic relative to the new
// version's: a canary at a quarter of the traffic.
const gridBaselineFactor = 3

// gridBadFactor is the bad version's error ratio over the baseline's.
const gridBadFactor = 2

// gridCell is one cell: the decisions and the traffic time they took.
type gridCell struct {
	RPS, ErrRatio float64
	Healthy       cellOutcome
	Bad           cellOutcome
}

type cellOutcome struct {
	N       int
	Decided int     // promoted (healthy) or rolled back (bad)
	Wrong   int     // rolled back (healthy) or promoted (bad)
	Median  float64 // seconds of traffic to the expected decision
	P90     float64
}

// runGrid simulates n deployments of each kind per cell.
func runGrid(cfg Config, n int) []gridCell {
	var out []gridCell
	for _, rps := range gridRates {
		for _, er := range gridErrors {
			c := gridCell{RPS: rps, ErrRatio: er}
			for kind, factor := range map[Kind]float64{Healthy: 1, BadErrors: gridBadFactor} {
				var times []float64
				var o cellOutcome
				for i := range n {
					s := Scenario{Kind: kind, CanaryRPS: rps, BaselineRPS: rps * gridBaselineFactor, ErrRatio: er, Latency: 0.05, ErrFactor: factor, LatFactor: 1}
					res := Run(cfg, s, cfg.Seed*1_000_003+uint64(i)+uint64(rps*1e3)+uint64(er*1e6))
					o.N++
					want, wrong := verdict.Promote, verdict.Rollback
					if kind != Healthy {
						want, wrong = verdict.Rollback, verdict.Promote
					}
					switch res.Decision {
					case want:
						o.Decided++
						times = append(times, res.Seconds)
					case wrong:
						o.Wrong++
					}
				}
				o.Median, o.P90 = quantile(times, 0.5), quantile(times, 0.9)
				if kind == Healthy {
					c.Healthy = o
				} else {
					c.Bad = o
				}
			}
			out = append(out, c)
		}
	}
	return out
}

// writeGrid prints the grid as a Markdown table.
func writeGrid(w io.Writer, cfg Config, cells []gridCell) {
	fmt.Fprintf(w, "window %s, step %s, default policy, %d deployments of each kind per row, seed %d; baseline traffic %d× the new version's; bad: errors ×%d\n\n",
		cfg.Window, cfg.Step, cells[0].Healthy.N, cfg.Seed, gridBaselineFactor, gridBadFactor)
	fmt.Fprintln(w, "| new version's traffic | baseline error ratio | healthy: promoted | time to promote, median (p90) | bad: rolled back | time to roll back, median (p90) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, c := range cells {
		fmt.Fprintf(w, "| %s req/s | %s | %s | %s | %s | %s |\n", trimFloat(c.RPS), trimFloat(100*c.ErrRatio)+"%",
			share(c.Healthy), times(c.Healthy), share(c.Bad), times(c.Bad))
	}
}

func share(o cellOutcome) string {
	s := pct(o.Decided, o.N)
	if o.Wrong > 0 {
		s += " (" + pct(o.Wrong, o.N) + " the other way)"
	}
	return s
}

func pct(k, n int) string {
	p := 100 * float64(k) / float64(n)
	if p > 0 && p < 10 {
		return strings.TrimSuffix(fmt.Sprintf("%.1f", p), ".0") + "%"
	}
	return fmt.Sprintf("%.0f%%", p)
}

func times(o cellOutcome) string {
	if o.Decided == 0 {
		return "—"
	}
	return fmt.Sprintf("%s (%s)", minutes(o.Median), minutes(o.P90))
}

func minutes(s float64) string {
	if math.IsNaN(s) {
		return "—"
	}
	if s < 60 {
		return fmt.Sprintf("%.0f s", s)
	}
	m := s / 60
	return strings.TrimSuffix(fmt.Sprintf("%.1f", m), ".0") + " min"
}

func trimFloat(f float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", f), "0"), ".")
}
