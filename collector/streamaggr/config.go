// Package streamaggr aggregates samples as they arrive, before storage, in
// the manner of vmagent's stream aggregation: each rule selects input series
// with a PromQL selector, groups them by (or without) labels, and every
// interval writes one output series per group and output function. The
// input series can be dropped, so that only the aggregate is stored.
//
// Output series are named
//
//	<metric>:<interval>[_by_<l1>_<l2>...][_without_<l1>_<l2>...]_<output>
//
// e.g. http_requests_total:1m_by_code_total, and quantiles carry a
// "quantile" label. Aggregation is by arrival time: a sample counts towards
// the interval it arrives in, whatever its timestamp. Only float samples
// are aggregated; native histograms pass through untouched.
package streamaggr

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// Output functions a rule may compute.
const (
	OutputTotal        = "total"         // running sum of the increases of input counters (resets handled)
	OutputIncrease     = "increase"      // sum of the increases of input counters within the interval
	OutputCountSamples = "count_samples" // samples received in the interval
	OutputSumSamples   = "sum_samples"   // sum of sample values in the interval
	OutputCountSeries  = "count_series"  // distinct input series seen in the interval
	OutputMin          = "min"
	OutputMax          = "max"
	OutputAvg          = "avg"
	OutputLast         = "last"
	OutputStddev       = "stddev"
	OutputQuantiles    = "quantiles" // written as quantiles(0.5, 0.99)
)

var simpleOutputs = []string{OutputTotal, OutputIncrease, OutputCountSamples, OutputSumSamples, OutputCountSeries, OutputMin, OutputMax, OutputAvg, OutputLast, OutputStddev}

// Selectors is one selector or a list of them in YAML.
type Selectors []string

// UnmarshalYAML accepts a string or a list of strings.
func (s *Selectors) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = Selectors{n.Value}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*s = list
	return nil
}

// RuleConfig is one aggregation rule.
type RuleConfig struct {
	// Match selects the input series, e.g. '{__name__=~"http_requests_total|rpc_calls_total"}'.
	Match Selectors `yaml:"match"`
	// Interval is how often outputs are written.
	Interval model.Duration `yaml:"interval"`
	// By keeps only these labels (and the metric name) in outputs.
	By []string `yaml:"by"`
	// Without removes these labels from outputs. By and Without exclude each other.
	Without []string `yaml:"without"`
	// Outputs lists the functions to compute.
	Outputs []string `yaml:"outputs"`
	// DropInput stores only the outputs, not the matched input samples.
	DropInput bool `yaml:"drop_input"`
	// KeepVersion keeps the "version" label in outputs even when By does not
	// name it, so aggregates stay tied to the deployment (default true).
	// Without removes "version" only when it lists it.
	KeepVersion *bool `yaml:"keep_version"`
	// StalenessInterval is how long an input series is remembered after its
	// last sample, for total and increase (default twice the interval).
	StalenessInterval model.Duration `yaml:"staleness_interval"`
	// MaxSeries bounds the output groups of this rule (default 100000);
	// samples for further groups are dropped and counted.
	MaxSeries int `yaml:"max_series"`
}

// DefaultMaxSeries bounds a rule's output groups when max_series is not set.
const DefaultMaxSeries = 100000

// Validate checks the rule and reports the first problem.
func (c RuleConfig) Validate() error {
	if len(c.Match) == 0 {
		return errors.New("match: at least one series selector is required")
	}
	for _, m := range c.Match {
		if _, err := parser.NewParser(parser.Options{}).ParseMetricSelector(m); err != nil {
			return fmt.Errorf("match %q: %w", m, err)
		}
	}
	if c.Interval <= 0 {
		return fmt.Errorf("interval must be positive, got %s", c.Interval)
	}
	if time.Duration(c.Interval) < time.Second {
		return fmt.Errorf("interval must be at least 1s, got %s", c.Interval)
	}
	if len(c.By) > 0 && len(c.Without) > 0 {
		return errors.New("by and without cannot both be set")
	}
	for _, l := range append(slices.Clone(c.By), c.Without...) {
		if !model.UTF8Validation.IsValidLabelName(l) || l == model.MetricNameLabel {
			return fmt.Errorf("invalid label name %q in by/without", l)
		}
	}
	if len(c.Outputs) == 0 {
		return errors.New("outputs: at least one output is required")
	}
	for _, o := range c.Outputs {
		if _, _, err := parseOutput(o); err != nil {
			return err
		}
	}
	if c.StalenessInterval < 0 {
		return fmt.Errorf("staleness_interval must not be negative, got %s", c.StalenessInterval)
	}
	if c.MaxSeries < 0 {
		return fmt.Errorf("max_series must not be negative, got %d", c.MaxSeries)
	}
	return nil
}

// parseOutput returns the output's name and, for quantiles, its phis.
func parseOutput(o string) (string, []float64, error) {
	o = strings.TrimSpace(o)
	if slices.Contains(simpleOutputs, o) {
		return o, nil, nil
	}
	if strings.HasPrefix(o, OutputQuantiles+"(") && strings.HasSuffix(o, ")") {
		args := strings.Split(strings.TrimSuffix(strings.TrimPrefix(o, OutputQuantiles+"("), ")"), ",")
		var phis []float64
		for _, a := range args {
			phi, err := strconv.ParseFloat(strings.TrimSpace(a), 64)
			if err != nil || phi < 0 || phi > 1 {
				return "", nil, fmt.Errorf("output %q: quantile %q must be a number from 0 to 1", o, strings.TrimSpace(a))
			}
			phis = append(phis, phi)
		}
		return OutputQuantiles, phis, nil
	}
	return "", nil, fmt.Errorf("unknown output %q (known: %s, quantiles(phi, ...))", o, strings.Join(simpleOutputs, ", "))
}

// suffix is the part of an output name after the metric name, without the output.
func (c RuleConfig) suffix() string {
	var sb strings.Builder
	sb.WriteString(":")
	sb.WriteString(c.Interval.String())
	if len(c.By) > 0 {
		sb.WriteString("_by_")
		sb.WriteString(strings.Join(sortedCopy(c.By), "_"))
	}
	if len(c.Without) > 0 {
		sb.WriteString("_without_")
		sb.WriteString(strings.Join(sortedCopy(c.Without), "_"))
	}
	return sb.String()
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

func (c RuleConfig) keepVersion() bool { return c.KeepVersion == nil || *c.KeepVersion }

func (c RuleConfig) staleness() time.Duration {
	if c.StalenessInterval > 0 {
		return time.Duration(c.StalenessInterval)
	}
	return 2 * time.Duration(c.Interval)
}

func (c RuleConfig) maxSeries() int {
	if c.MaxSeries > 0 {
		return c.MaxSeries
	}
	return DefaultMaxSeries
}
