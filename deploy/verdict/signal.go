// Package verdict decides whether a new version of a service should be
// promoted or rolled back by comparing its health signals with a baseline
// (the previous version running alongside it, or the service before the
// deploy): ratio signals (errors among requests) with Wald's sequential
// probability ratio test on their counts, other signals per step with a
// Mann-Whitney U test plus an effect-size tolerance, and absolute bounds
// (SLOs) on both; a first deploy is judged on its bounds alone.
package verdict

import (
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/vigilhq/vigil/internal/red"
)

// Direction says which way a signal gets worse.
type Direction string

// Directions of a signal.
const (
	HigherIsWorse Direction = "higher_is_worse"
	LowerIsWorse  Direction = "lower_is_worse"
)

// Kind is how a signal takes part in the verdict.
type Kind string

// Kinds of signal.
const (
	// KindCompare signals compare canary and baseline samples.
	KindCompare Kind = "compare"
	// KindTraffic is the request rate: it tells whether there is enough
	// traffic to judge and how much more is needed; it is not scored.
	KindTraffic Kind = "traffic"
	// KindAlert fails immediately when its query returns any sample.
	KindAlert Kind = "alert"
	// KindRatio signals are a share of events, such as errors among
	// requests: Query counts the bad events in each step and Total all of
	// them. The canary's and the baseline's counts are compared with a
	// sequential likelihood-ratio test, which at low rates has far more
	// power than comparing per-step ratios (most of which are 0 at 1% errors
	// and 150 requests a step).
	KindRatio Kind = "ratio"
)

// Signal is one health signal. Query is PromQL in which $selector stands for
// the label matchers of the version under test (service, environment,
// version and the catalog's extra matchers), $service for the same without
// the version, $version for the version's name, and $rate for the rate window;
// it must return one series.
type Signal struct {
	Name  string `yaml:"name" json:"name"`
	Query string `yaml:"query" json:"query"`
	Kind  Kind   `yaml:"kind" json:"kind,omitempty"`
	// Total counts all events in each step, for a ratio signal.
	Total string `yaml:"total" json:"total,omitempty"`
	// Presence, for a ratio signal whose bad events come from another
	// source than its total (log_error_ratio: error log records per
	// request), has data for a version whenever that source sends any
	// (all its log records, whatever the severity). A side with no sample
	// of it has no data for the signal rather than zero bad events: a
	// service that sends no logs is not judged on its log errors.
	Presence  string    `yaml:"presence" json:"presence,omitempty"`
	Direction Direction `yaml:"direction" json:"direction,omitempty"`
	// Tolerance is the relative worsening accepted (0.2: 20% worse than
	// baseline). For a ratio signal it is the regression the test is built
	// to catch: a canary that much worse fails with chance 1-beta, one no
	// worse than the baseline passes with chance 1-alpha.
	Tolerance float64 `yaml:"tolerance" json:"tolerance,omitempty"`
	// Floor is the absolute worsening always accepted, in the signal's unit,
	// so that a baseline near zero does not make every blip significant;
	// for a ratio signal, the smallest absolute regression caught.
	Floor float64 `yaml:"floor" json:"floor,omitempty"`
	// Max and Min are absolute bounds (SLOs): a canary mean beyond one
	// fails the signal at once, whatever the baseline.
	Max *float64 `yaml:"max" json:"max,omitempty"`
	Min *float64 `yaml:"min" json:"min,omitempty"`
	// Weight is the signal's share of the score (default 1).
	Weight float64 `yaml:"weight" json:"weight,omitempty"`
	// Critical signals force a rollback when they fail.
	Critical bool `yaml:"critical" json:"critical,omitempty"`
	// Unit words the signal in verdict texts: for a ratio or traffic signal
	// what Total counts (requests, jobs, messages); for a compare signal
	// the unit of its value (seconds, bytes, ratio, or any word).
	// Defaults: requests, and seconds for the latency signals.
	Unit string `yaml:"unit" json:"unit,omitempty"`
}

// Validate checks a signal, naming it.
func (s Signal) Validate() error {
	if s.Name == "" {
		return errors.New("signal name is required")
	}
	if s.Query == "" {
		return fmt.Errorf("signal %s: query is required", s.Name)
	}
	vars := Vars{Selector: `service="x",version="v"`, Service: `service="x"`, Step: "15s", Rate: "1m", Version: "v"}
	if _, err := parser.NewParser(parser.Options{}).ParseExpr(Render(s.Query, vars)); err != nil {
		return fmt.Errorf("signal %s: query %q: %w", s.Name, s.Query, err)
	}
	switch s.Kind {
	case "", KindCompare, KindTraffic, KindAlert:
		if s.Total != "" || s.Presence != "" {
			return fmt.Errorf("signal %s: total and presence are only for kind ratio", s.Name)
		}
	case KindRatio:
		if s.Total == "" {
			return fmt.Errorf("signal %s: a ratio signal needs total, the query counting all events per step", s.Name)
		}
		if s.Direction == LowerIsWorse {
			return fmt.Errorf("signal %s: a ratio signal counts bad events (more is worse): count the failures rather than the successes", s.Name)
		}
		if _, err := parser.NewParser(parser.Options{}).ParseExpr(Render(s.Total, vars)); err != nil {
			return fmt.Errorf("signal %s: total %q: %w", s.Name, s.Total, err)
		}
		if s.Presence != "" {
			if _, err := parser.NewParser(parser.Options{}).ParseExpr(Render(s.Presence, vars)); err != nil {
				return fmt.Errorf("signal %s: presence %q: %w", s.Name, s.Presence, err)
			}
		}
	default:
		return fmt.Errorf("signal %s: kind %q is not compare, ratio, traffic or alert", s.Name, s.Kind)
	}
	switch s.Direction {
	case "", HigherIsWorse, LowerIsWorse:
	default:
		return fmt.Errorf("signal %s: direction %q is not higher_is_worse or lower_is_worse", s.Name, s.Direction)
	}
	if s.Tolerance < 0 || s.Floor < 0 || s.Weight < 0 {
		return fmt.Errorf("signal %s: tolerance, floor and weight must not be negative", s.Name)
	}
	return nil
}

func (s Signal) withDefaults() Signal {
	if s.Kind == "" {
		s.Kind = KindCompare
	}
	if s.Direction == "" {
		s.Direction = HigherIsWorse
	}
	if s.Weight == 0 && (s.Kind == KindCompare || s.Kind == KindRatio) {
		s.Weight = 1
	}
	return s
}

// Vars are what a signal query's placeholders stand for.
type Vars struct {
	Selector string // $selector
	Service  string // $service
	Step     string // $step
	Rate     string // $rate
	Version  string // $version: the version's name
}

// Render substitutes the placeholders of a signal query.
func Render(query string, v Vars) string {
	return strings.NewReplacer("$selector", v.Selector, "$service", v.Service, "$step", v.Step, "$rate", v.Rate, "$version", v.Version).Replace(query)
}

// LatencyQuery is the q-quantile (0.99: p99) of the server spans' duration
// in each step, from the span metrics' histogram: the query of the default
// latency signals and of a catalog latency SLO.
func LatencyQuery(q float64) string {
	return red.StepLatency(q, "$selector", "$step")
}

// DefaultSignals are the RED signals of the span metrics, the log error
// ratio and firing critical alerts (internal/red writes their PromQL).
// Each sample is the change of the counters over one step, series by
// series (x - x offset $step; a series new in the step or restarted from
// zero counts its whole value; one gone counts nothing), summed, so that
// samples do not overlap and are independent, as the tests assume, and N
// collector replicas give what one node gives; a step with no data gives
// no sample. The error ratios are ratio signals: errors and requests are
// counted, and a counter that first appears during a step (a version's
// first error) counts from zero.
func DefaultSignals() []Signal {
	const sel, step = "$selector", "$step"
	calls := red.StepRequests(sel, step)
	return []Signal{
		{Name: "request_rate", Kind: KindTraffic, Query: calls},
		{Name: "error_ratio", Kind: KindRatio, Query: red.StepErrors(sel, step), Total: calls, Tolerance: 0.5, Floor: 0.002, Weight: 2},
		{Name: "latency_p50", Query: LatencyQuery(0.5), Tolerance: 0.1, Floor: 0.002},
		{Name: "latency_p99", Query: LatencyQuery(0.99), Tolerance: 0.25, Floor: 0.005},
		{Name: "log_error_ratio", Kind: KindRatio, Query: red.StepLogErrors(sel, step), Total: calls, Presence: red.StepLogs(sel, step), Tolerance: 0.5, Floor: 0.002},
		{Name: "critical_alerts", Kind: KindAlert, Query: `ALERTS{alertstate="firing",severity="critical",$service}`, Critical: true},
	}
}
