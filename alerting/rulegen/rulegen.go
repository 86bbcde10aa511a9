// Package rulegen writes the Prometheus rule files a team would otherwise
// write by hand, from the service catalog:
//
//   - SLO rules: SLI error ratios over the Google SRE workbook's windows,
//     multi-window multi-burn-rate alerts (page: 1h/5m at 14.4× and 6h/30m
//     at 6×; ticket: 1d/2h at 3× and 3d/6h at 1×), objective, error budget,
//     burn rates and the error budget left over the SLO period;
//   - deploy-health rules: each version's error ratio, p99 latency and
//     request rate, and alerts when the version a deployment shipped does
//     worse than the version it replaced, labelled with service and version
//     and annotated with the runbook and the rollback command.
//
// All of them read Vigil's span metrics (traces_span_metrics_*), so they work
// with no hand-written recording rules, and load into Vigil, Prometheus or the
// Mimir ruler alike. Next to each rule file it writes `promtool test rules`
// unit tests (input series → expected alerts).
package rulegen

import (
	"bytes"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/internal/red"
	"github.com/vigilhq/vigil/internal/semconv"
)

// Series names the rules read and write.
const (
	CallsMetric    = semconv.SpanCalls
	DurationMetric = semconv.SpanDuration
	DeployInfo     = semconv.DeploymentInfo

	SLIErrorRatio        = semconv.SLIErrorRatio // + window, e.g. slo:sli_error:ratio_rate5m
	SLOObjective         = semconv.SLOObjective
	SLOErrorBudget       = semconv.SLOErrorBudget
	SLOCurrentBurnRate   = semconv.SLOCurrentBurnRate
	SLOPeriodBurnRate    = semconv.SLOPeriodBurnRate
	SLOBudgetRemaining   = semconv.SLOBudgetRemaining
	DeployErrorRatio     = semconv.DeployErrorRatio
	DeployLatencyP99     = semconv.DeployLatencyP99
	DeployRequestRate    = semconv.DeployRequestRate
	AlertBudgetBurn      = "VigilSLOErrorBudgetBurn"
	AlertErrorRegression = "VigilDeployErrorRatioRegression"
	AlertLatencyRegress  = "VigilDeployLatencyRegression"
)

// Windows are the SLI windows the burn-rate alerts need.
var Windows = []time.Duration{5 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour, 24 * time.Hour, 72 * time.Hour}

// BurnRate is one multi-window condition of the SRE workbook.
type BurnRate struct {
	Severity    string
	Long, Short time.Duration
	Factor      float64
}

// BurnRates are the workbook's four conditions, two per severity.
var BurnRates = []BurnRate{
	{"page", time.Hour, 5 * time.Minute, 14.4},
	{"page", 6 * time.Hour, 30 * time.Minute, 6},
	{"ticket", 24 * time.Hour, 2 * time.Hour, 3},
	{"ticket", 72 * time.Hour, 6 * time.Hour, 1},
}

// Options tune the deploy-health thresholds; the zero value uses defaults.
type Options struct {
	// ErrorRatioFactor: the new version fails when its error ratio exceeds
	// the previous version's times this (2) ...
	ErrorRatioFactor float64
	// ErrorRatioMargin ... and exceeds it by at least this much (0.01, one
	// percentage point), so 0.01% → 0.03% does not page anyone.
	ErrorRatioMargin float64
	// LatencyFactor and LatencyMargin do the same for p99 latency (1.5, 50ms).
	LatencyFactor float64
	LatencyMargin time.Duration
	// MinRequestRate is the least traffic (requests/s) the new version must
	// serve before a regression alert can fire (0.1).
	MinRequestRate float64
	// For is how long a regression must hold before it fires (2m).
	For time.Duration
}

func (o Options) withDefaults() Options {
	if o.ErrorRatioFactor == 0 {
		o.ErrorRatioFactor = 2
	}
	if o.ErrorRatioMargin == 0 {
		o.ErrorRatioMargin = 0.01
	}
	if o.LatencyFactor == 0 {
		o.LatencyFactor = 1.5
	}
	if o.LatencyMargin == 0 {
		o.LatencyMargin = 50 * time.Millisecond
	}
	if o.MinRequestRate == 0 {
		o.MinRequestRate = 0.1
	}
	if o.For == 0 {
		o.For = 2 * time.Minute
	}
	return o
}

// File is one generated file.
type File struct {
	Name    string
	Content []byte
}

// RuleFile is the rulefmt document.
type RuleFile struct {
	Groups []Group `yaml:"groups"`
}

// Group is a rule group.
type Group struct {
	Name  string `yaml:"name"`
	Rules []Rule `yaml:"rules"`
}

// Rule is a recording or an alerting rule.
type Rule struct {
	Record      string            `yaml:"record,omitempty"`
	Alert       string            `yaml:"alert,omitempty"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// Generate returns, for every service of the catalog, a rule file
// `<service>.rules.yml` (or `<service>-<environment>.rules.yml` when a
// service appears in several environments) and its unit tests
// `<...>.rules.test.yml`.
func Generate(cat *catalog.Catalog, opts Options) ([]File, error) {
	opts = opts.withDefaults()
	envs := map[string]int{}
	for _, s := range cat.Services {
		envs[s.Name]++
	}
	var files []File
	for _, s := range cat.Services {
		base := s.Name
		if envs[s.Name] > 1 {
			base += "-" + s.Environment
		}
		rf := Rules(s, cat.Defaults, opts)
		b, err := marshal(rf)
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", s.Name, err)
		}
		files = append(files, File{Name: base + ".rules.yml", Content: b})
		tb, err := marshal(Tests(s, cat.Defaults, opts, base+".rules.yml"))
		if err != nil {
			return nil, fmt.Errorf("service %s tests: %w", s.Name, err)
		}
		files = append(files, File{Name: base + ".rules.test.yml", Content: tb})
	}
	return files, nil
}

func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# Generated by `vigil gen rules` from the service catalog. Do not edit: change the catalog and generate again.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), enc.Close()
}

// Rules builds a service's rule file.
func Rules(s catalog.Service, d catalog.Defaults, opts Options) RuleFile {
	opts = opts.withDefaults()
	var rf RuleFile
	if slo := s.SLOs.Availability; slo != nil {
		rf.Groups = append(rf.Groups, sloGroup(s, d, "availability", slo.Objective, window(slo.Window, d), availabilityErrorRatio(s)))
	}
	if slo := s.SLOs.Latency; slo != nil {
		rf.Groups = append(rf.Groups, sloGroup(s, d, "latency", slo.Objective, window(slo.Window, d), latencyErrorRatio(s, time.Duration(slo.Threshold))))
	}
	rf.Groups = append(rf.Groups, deployGroup(s, d, opts))
	return rf
}

func window(w model.Duration, d catalog.Defaults) time.Duration {
	if w > 0 {
		return time.Duration(w)
	}
	if d.SLOWindow > 0 {
		return time.Duration(d.SLOWindow)
	}
	return 30 * 24 * time.Hour
}

// selector selects the service's spans, and only the operations the
// catalog names when it names some (internal/red adds the server span kind).
func selector(s catalog.Service) string {
	sel := s.Selector()
	if len(s.Operations) > 0 {
		ops := make([]string, len(s.Operations))
		for i, op := range s.Operations {
			ops[i] = regexp.QuoteMeta(op)
		}
		sel += fmt.Sprintf(",%s=~%q", semconv.LabelSpanName, strings.Join(ops, "|"))
	}
	return sel
}

// availabilityErrorRatio is the share of server spans that ended in an
// error over a window; 0 (not empty) when requests came but none failed.
// Like every generated expression it sums over the collector replicas.
func availabilityErrorRatio(s catalog.Service) func(w string) string {
	return func(w string) string { return red.ErrorRatio(selector(s), w) }
}

// latencyErrorRatio is the share of server spans slower than threshold,
// read off the native histogram of span durations.
func latencyErrorRatio(s catalog.Service, threshold time.Duration) func(w string) string {
	return func(w string) string { return red.SlowRatio(threshold.Seconds(), selector(s), w) }
}

func sloLabels(s catalog.Service, slo string) map[string]string {
	return map[string]string{"service": s.Name, "environment": s.Environment, "slo": slo}
}

func sloSelector(s catalog.Service, slo string) string {
	return fmt.Sprintf(`{service=%q,environment=%q,slo=%q}`, s.Name, s.Environment, slo)
}

func sloGroup(s catalog.Service, d catalog.Defaults, slo string, objective float64, period time.Duration, ratio func(string) string) Group {
	budget := errorBudget(objective)
	lbls := sloLabels(s, slo)
	sel := sloSelector(s, slo)
	g := Group{Name: fmt.Sprintf("vigil-slo-%s-%s-%s", s.Name, s.Environment, slo)}
	for _, w := range Windows {
		ws := promDuration(w)
		g.Rules = append(g.Rules, Rule{Record: SLIErrorRatio + ws, Expr: pretty(ratio(ws)), Labels: lbls})
	}
	ps := promDuration(period)
	g.Rules = append(g.Rules,
		Rule{Record: SLOObjective, Expr: fmt.Sprintf("vector(%s)", num(objective/100)), Labels: lbls},
		Rule{Record: SLOErrorBudget, Expr: fmt.Sprintf("vector(%s)", num(budget)), Labels: lbls},
		Rule{Record: SLOCurrentBurnRate, Expr: pretty(fmt.Sprintf("%s5m%s / %s", SLIErrorRatio, sel, num(budget))), Labels: lbls},
		// The period's error ratio is the mean of the 5m ratios, as Sloth
		// computes it: cheap to evaluate, where a 30d rate over raw spans is not.
		Rule{Record: SLIErrorRatio + ps, Expr: pretty(fmt.Sprintf("avg_over_time(%s5m%s[%s])", SLIErrorRatio, sel, ps)), Labels: lbls},
		Rule{Record: SLOPeriodBurnRate, Expr: pretty(fmt.Sprintf("%s%s%s / %s", SLIErrorRatio, ps, sel, num(budget))), Labels: lbls},
		Rule{Record: SLOBudgetRemaining, Expr: pretty(fmt.Sprintf("1 - %s%s", SLOPeriodBurnRate, sel)), Labels: lbls},
	)
	for _, sev := range []string{"page", "ticket"} {
		var conds, descr []string
		var long time.Duration
		for _, br := range BurnRates {
			if br.Severity != sev {
				continue
			}
			if long == 0 {
				long = br.Long
			}
			th := fmt.Sprintf("(%s * %s)", num(br.Factor), num(budget))
			conds = append(conds, fmt.Sprintf("(%s%s%s > %s and %s%s%s > %s)",
				SLIErrorRatio, promDuration(br.Long), sel, th, SLIErrorRatio, promDuration(br.Short), sel, th))
			descr = append(descr, fmt.Sprintf("%s× over %s and %s", num(br.Factor), promDuration(br.Long), promDuration(br.Short)))
		}
		// Each condition's short window is a twelfth of its long one, so the
		// alert resets soon after the burn stops; `for` filters one bad scrape.
		forDur := 2 * time.Minute
		if sev == "ticket" {
			forDur = 15 * time.Minute
		}
		labels := alertLabels(s, sev)
		labels["slo"] = slo
		g.Rules = append(g.Rules, Rule{
			Alert:  AlertBudgetBurn,
			Expr:   pretty(strings.Join(conds, " or ")),
			For:    promDuration(forDur),
			Labels: labels,
			Annotations: annotations(s, d, map[string]string{
				"summary": fmt.Sprintf("%s (%s) is burning its %s error budget too fast", s.Name, s.Environment, slo),
				"description": fmt.Sprintf("The %s SLO of %s is %s%% over %s, an error budget of %s%%. Its error ratio exceeds the budget %s: at that rate the budget is spent in %s or less.",
					slo, s.Name, num(objective), ps, num(roundSig(budget*100)), strings.Join(descr, ", or "), exhaustion(period, sev)),
			}),
		})
	}
	return g
}

// alertLabels are the labels every generated alert of s carries: its
// severity and the service's identity as the verdict selects it (service,
// namespace, environment), so that the verdict's critical_alerts signal,
// which selects ALERTS by the same labels, sees the alert; and the owning
// team for Alertmanager routing.
func alertLabels(s catalog.Service, severity string) map[string]string {
	l := map[string]string{"severity": severity, "service": s.Name, "environment": s.Environment}
	if s.Namespace != "" {
		l["namespace"] = s.Namespace
	}
	if s.Owner != "" {
		l["team"] = s.Owner
	}
	return l
}

// exhaustion is how soon the fastest burn of a severity spends the budget.
func exhaustion(period time.Duration, sev string) string {
	for _, br := range BurnRates {
		if br.Severity == sev {
			return promDuration(time.Duration(float64(period) / br.Factor).Round(time.Hour))
		}
	}
	return ""
}

func annotations(s catalog.Service, d catalog.Defaults, a map[string]string) map[string]string {
	if u := runbook(s, d); u != "" {
		a["runbook_url"] = u
	}
	return a
}

func runbook(s catalog.Service, d catalog.Defaults) string {
	u := s.RunbookURL
	if u == "" {
		u = d.RunbookURL
	}
	return strings.ReplaceAll(u, "{{service}}", s.Name)
}

// byVersion are the labels the deploy-health rules keep.
var byVersion = []string{semconv.LabelService, semconv.LabelEnvironment, semconv.LabelVersion}

func deployGroup(s catalog.Service, d catalog.Defaults, o Options) Group {
	g := Group{Name: fmt.Sprintf("vigil-deploy-health-%s-%s", s.Name, s.Environment)}
	sel := selector(s)
	g.Rules = append(g.Rules,
		Rule{Record: DeployRequestRate, Expr: pretty(red.Requests(sel, "5m", byVersion...))},
		Rule{Record: DeployErrorRatio, Expr: pretty(red.ErrorRatio(sel, "5m", byVersion...))},
		Rule{Record: DeployLatencyP99, Expr: pretty(red.Latency(0.99, sel, "5m", byVersion...))},
	)
	svc := fmt.Sprintf(`{service=%q,environment=%q}`, s.Name, s.Environment)
	by := strings.Join(byVersion, ", ")
	// regression compares each deployed version (vigil_deployment_info names
	// it and the version it replaced) with the version it replaced: worse by
	// factor and by margin, with enough traffic to tell.
	regression := func(metric string, factor, margin float64) string {
		current := fmt.Sprintf("%s%s * on (%s) group_left (previous_version) max by (%s, previous_version) (%s%s)",
			metric, svc, by, by, DeployInfo, svc)
		baseline := fmt.Sprintf(`max by (service, environment, previous_version) (label_replace(%s%s, "previous_version", "$1", "version", "(.+)"))`, metric, svc)
		return fmt.Sprintf(`(%s) > on (service, environment, previous_version) group_left () (%s * %s) > on (service, environment, previous_version) group_left () (%s + %s) and on (%s) (%s%s >= %s)`,
			current, baseline, num(factor), baseline, num(margin), by, DeployRequestRate, svc, num(o.MinRequestRate))
	}
	rollback := rollbackCommand(s)
	mk := func(alert, metric, what string, factor, margin float64, marginText string) Rule {
		a := map[string]string{
			"summary": fmt.Sprintf("%s {{ $labels.version }} (%s) has a worse %s than {{ $labels.previous_version }}", s.Name, s.Environment, what),
			"description": fmt.Sprintf("The %s of %s {{ $labels.version }} over 5m is more than %s× and %s above that of {{ $labels.previous_version }}, the version it replaced. Roll back to {{ $labels.previous_version }} unless this is expected.",
				what, s.Name, num(factor), marginText),
			"rollback_command": rollback,
		}
		labels := alertLabels(s, "critical")
		return Rule{Alert: alert, Expr: pretty(regression(metric, factor, margin)), For: promDuration(o.For), Labels: labels, Annotations: annotations(s, d, a)}
	}
	g.Rules = append(g.Rules,
		mk(AlertErrorRegression, DeployErrorRatio, "error ratio", o.ErrorRatioFactor, o.ErrorRatioMargin,
			points(roundSig(o.ErrorRatioMargin*100))),
		mk(AlertLatencyRegress, DeployLatencyP99, "p99 latency", o.LatencyFactor, o.LatencyMargin.Seconds(), o.LatencyMargin.String()),
	)
	return g
}

func points(p float64) string {
	if p == 1 {
		return "1 percentage point"
	}
	return num(p) + " percentage points"
}

// rollbackCommand is what a person runs to go back to the previous version.
func rollbackCommand(s catalog.Service) string {
	if k := s.Rollback.Kubernetes; k != nil && k.Deployment != "" {
		ns := k.Namespace
		if ns == "" {
			ns = s.Namespace
		}
		return fmt.Sprintf("kubectl --namespace %s rollout undo deployment/%s", ns, k.Deployment)
	}
	return fmt.Sprintf("redeploy %s {{ $labels.previous_version }} to %s", s.Name, s.Environment)
}

func errorBudget(objective float64) float64 {
	// (100 - o) / 100 rounds better than 1 - o/100 (99.9 → 0.001, not 0.0010000000000000009).
	return roundSig((100 - objective) / 100)
}

func roundSig(f float64) float64 {
	p := math.Pow(10, 12-math.Ceil(math.Log10(math.Abs(f))))
	return math.Round(f*p) / p
}

func num(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func promDuration(d time.Duration) string { return model.Duration(d).String() }

var prettyParser = parser.NewParser(parser.Options{})

// pretty parses expr (so a generator bug fails here, not in Prometheus)
// and writes it in canonical form, on one line.
func pretty(expr string) string {
	e, err := prettyParser.ParseExpr(expr)
	if err != nil {
		panic(fmt.Sprintf("rulegen built an invalid expression %q: %v", expr, err))
	}
	return e.String()
}

// Sorted returns the names of files, sorted (for listings).
func Sorted(files []File) []string {
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.Name
	}
	slices.Sort(names)
	return names
}
