package rulegen

import (
	"fmt"
	"strings"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/internal/semconv"
)

// TestFile is a `promtool test rules` document.
type TestFile struct {
	RuleFiles          []string   `yaml:"rule_files"`
	EvaluationInterval string     `yaml:"evaluation_interval"`
	Tests              []TestCase `yaml:"tests"`
}

// TestCase is one test group: input series, then expectations.
type TestCase struct {
	Name           string          `yaml:"name"`
	Interval       string          `yaml:"interval"`
	InputSeries    []InputSeries   `yaml:"input_series"`
	AlertRuleTests []AlertRuleTest `yaml:"alert_rule_test,omitempty"`
	PromQLExprTest []PromQLExpr    `yaml:"promql_expr_test,omitempty"`
}

// InputSeries is a series in promtool's expanding notation.
type InputSeries struct {
	Series string `yaml:"series"`
	Values string `yaml:"values"`
}

// AlertRuleTest expects the firing alerts of one alert name at a time.
type AlertRuleTest struct {
	EvalTime  string     `yaml:"eval_time"`
	Alertname string     `yaml:"alertname"`
	ExpAlerts []ExpAlert `yaml:"exp_alerts"`
}

// ExpAlert is one expected firing alert.
type ExpAlert struct {
	ExpLabels      map[string]string `yaml:"exp_labels"`
	ExpAnnotations map[string]string `yaml:"exp_annotations"`
}

// PromQLExpr expects the result of a query.
type PromQLExpr struct {
	Expr       string      `yaml:"expr"`
	EvalTime   string      `yaml:"eval_time"`
	ExpSamples []ExpSample `yaml:"exp_samples"`
}

// ExpSample is one expected sample.
type ExpSample struct {
	Labels string  `yaml:"labels"`
	Value  float64 `yaml:"value"`
}

// Tests writes unit tests for a service's rules: a healthy period that
// raises nothing, an availability burn that pages and opens a ticket, a
// deployment whose new version fails more than the old one, and one that
// does not. Services whose catalog matchers are not plain equalities get no
// tests, as input series cannot be made to match them.
func Tests(s catalog.Service, d catalog.Defaults, opts Options, ruleFile string) TestFile {
	opts = opts.withDefaults()
	tf := TestFile{RuleFiles: []string{ruleFile}, EvaluationInterval: "1m"}
	base, ok := seriesLabels(s)
	if !ok {
		return tf
	}
	op := "GET /"
	if len(s.Operations) > 0 {
		op = s.Operations[0]
	}
	replicaCalls := func(version, status, replica string) string {
		b := labels.NewBuilder(base)
		b.Set("__name__", CallsMetric)
		b.Set(semconv.LabelSpanKind, semconv.KindServer)
		b.Set(semconv.LabelSpanName, op)
		b.Set(semconv.LabelStatusCode, status)
		b.Set(semconv.LabelVersion, version)
		b.Set(semconv.LabelCollector, replica)
		return b.Labels().String()
	}
	calls := func(version, status string) string { return replicaCalls(version, status, "") }
	rf := Rules(s, d, opts)
	find := func(alert, severity, slo string) Rule {
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Alert == alert && (severity == "" || r.Labels["severity"] == severity) && (slo == "" || r.Labels["slo"] == slo) {
					return r
				}
			}
		}
		panic("rulegen: no rule " + alert)
	}
	expect := func(r Rule, extra map[string]string) ExpAlert {
		l := map[string]string{"alertname": r.Alert}
		for k, v := range r.Labels {
			l[k] = v
		}
		for k, v := range extra {
			l[k] = v
		}
		a := map[string]string{}
		for k, v := range r.Annotations {
			for lk, lv := range extra {
				v = strings.ReplaceAll(v, "{{ $labels."+lk+" }}", lv)
			}
			a[k] = v
		}
		return ExpAlert{ExpLabels: l, ExpAnnotations: a}
	}

	if slo := s.SLOs.Availability; slo != nil {
		budget := errorBudget(slo.Objective)
		// 60 requests a minute without errors for 3h, then half of them fail.
		tc := TestCase{
			Name:     fmt.Sprintf("%s: availability error budget burn", s.Name),
			Interval: "1m",
			InputSeries: []InputSeries{
				{calls("v1", "STATUS_CODE_OK"), "0+60x180 10830+30x119"},
				{calls("v1", "STATUS_CODE_ERROR"), "0+0x180 30+30x119"},
			},
			AlertRuleTests: []AlertRuleTest{
				{EvalTime: "2h", Alertname: AlertBudgetBurn, ExpAlerts: []ExpAlert{}},
				{EvalTime: "3h20m", Alertname: AlertBudgetBurn, ExpAlerts: []ExpAlert{
					expect(find(AlertBudgetBurn, "page", "availability"), nil),
					expect(find(AlertBudgetBurn, "ticket", "availability"), nil),
				}},
			},
		}
		sel := fmt.Sprintf(`{service=%q,environment=%q,slo="availability"}`, s.Name, s.Environment)
		sloLbls := func(name string) string {
			return labels.FromStrings("__name__", name, "service", s.Name, "environment", s.Environment, "slo", "availability").String()
		}
		tc.PromQLExprTest = []PromQLExpr{
			{Expr: SLIErrorRatio + "5m" + sel, EvalTime: "2h", ExpSamples: []ExpSample{{sloLbls(SLIErrorRatio + "5m"), 0}}},
			{Expr: SLIErrorRatio + "5m" + sel, EvalTime: "3h20m", ExpSamples: []ExpSample{{sloLbls(SLIErrorRatio + "5m"), 0.5}}},
			{Expr: SLOErrorBudget + sel, EvalTime: "3h20m", ExpSamples: []ExpSample{{sloLbls(SLOErrorBudget), budget}}},
			{Expr: SLOCurrentBurnRate + sel, EvalTime: "3h20m", ExpSamples: []ExpSample{{sloLbls(SLOCurrentBurnRate), 0.5 / budget}}},
		}
		tf.Tests = append(tf.Tests, tc)
	}

	// A deployment of v2 replacing v1, both serving 60 requests a minute:
	// v1 fails 1 in 60; a bad v2 fails 15 in 60, a good v2 as v1 does.
	info := labels.NewBuilder(base)
	info.Set("__name__", DeployInfo)
	info.Set("version", "v2")
	info.Set("previous_version", "v1")
	deploy := func(name string, v2Errors int, want []ExpAlert) TestCase {
		return TestCase{
			Name:     fmt.Sprintf("%s: %s", s.Name, name),
			Interval: "1m",
			InputSeries: []InputSeries{
				{info.Labels().String(), "1x40"},
				{calls("v1", "STATUS_CODE_OK"), "0+59x40"},
				{calls("v1", "STATUS_CODE_ERROR"), "0+1x40"},
				{calls("v2", "STATUS_CODE_OK"), fmt.Sprintf("0+%dx40", 60-v2Errors)},
				{calls("v2", "STATUS_CODE_ERROR"), fmt.Sprintf("0+%dx40", v2Errors)},
			},
			AlertRuleTests: []AlertRuleTest{
				{EvalTime: "30m", Alertname: AlertErrorRegression, ExpAlerts: want},
				{EvalTime: "30m", Alertname: AlertLatencyRegress, ExpAlerts: []ExpAlert{}},
			},
		}
	}
	// The same deployment counted by two collector replicas (collector
	// a and b share the traffic, b restarts at 20m): the rules sum the
	// replicas, so they find what one Vigil finds.
	scaled := func(name string, v2Errors int, want []ExpAlert) TestCase {
		tc := deploy(name, v2Errors, want)
		tc.InputSeries = tc.InputSeries[:1]
		for _, c := range []struct {
			version, status string
			perMinute       int
		}{{"v1", "STATUS_CODE_OK", 59}, {"v1", "STATUS_CODE_ERROR", 1}, {"v2", "STATUS_CODE_OK", 60 - v2Errors}, {"v2", "STATUS_CODE_ERROR", v2Errors}} {
			a, b := c.perMinute-c.perMinute/2, c.perMinute/2
			tc.InputSeries = append(tc.InputSeries,
				InputSeries{replicaCalls(c.version, c.status, "a"), fmt.Sprintf("0+%dx40", a)},
				InputSeries{replicaCalls(c.version, c.status, "b"), fmt.Sprintf("0+%dx20 0+%dx19", b, b)})
		}
		return tc
	}
	tf.Tests = append(tf.Tests,
		deploy("new version fails more than the old one", 15, []ExpAlert{
			expect(find(AlertErrorRegression, "", ""), map[string]string{"version": "v2", "previous_version": "v1"}),
		}),
		deploy("new version as healthy as the old one", 1, []ExpAlert{}),
		scaled("new version fails more than the old one, seen by two collector replicas", 15, []ExpAlert{
			expect(find(AlertErrorRegression, "", ""), map[string]string{"version": "v2", "previous_version": "v1"}),
		}),
		scaled("new version as healthy as the old one, seen by two collector replicas", 1, []ExpAlert{}),
	)
	return tf
}

// seriesLabels are the labels a service's derived series carry, from its
// selector; false when a matcher is not an equality.
func seriesLabels(s catalog.Service) (labels.Labels, bool) {
	ms, err := prettyParser.ParseMetricSelector("{" + s.Selector() + "}")
	if err != nil {
		return labels.EmptyLabels(), false
	}
	b := labels.NewScratchBuilder(len(ms))
	for _, m := range ms {
		if m.Type != labels.MatchEqual {
			return labels.EmptyLabels(), false
		}
		b.Add(m.Name, m.Value)
	}
	b.Sort()
	return b.Labels(), true
}
