// Package catalog reads the service catalog: the small YAML file that names
// the services a team ships, their SLOs and how to roll them back. The rule
// generator (alerting), the dashboard generator (dashboards) and the verdict
// engine (deploy) all read the same file, so a service is described once.
package catalog

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/vigilhq/vigil/internal/red"
	"github.com/vigilhq/vigil/internal/yamlconf"
)

// Catalog is the parsed catalog file.
type Catalog struct {
	// Defaults apply to every service that leaves the field empty.
	Defaults Defaults  `yaml:"defaults"`
	Services []Service `yaml:"services"`
}

// Defaults are catalog-wide values.
type Defaults struct {
	Environment string `yaml:"environment"`
	Namespace   string `yaml:"namespace"`
	// RunbookURL is a template; "{{service}}" is replaced by the service name.
	RunbookURL string `yaml:"runbook_url"`
	// SLOWindow is the SLO compliance period, 30d when unset.
	SLOWindow model.Duration `yaml:"slo_window"`
}

// Service is one deployable service.
type Service struct {
	Name        string `yaml:"name"`
	Namespace   string `yaml:"namespace"`
	Environment string `yaml:"environment"`
	Owner       string `yaml:"owner"`
	RunbookURL  string `yaml:"runbook_url"`
	// Matchers are extra PromQL label matchers added to every query of this
	// service's signals, e.g. `cluster="eu-1"`. Written without braces.
	Matchers string `yaml:"matchers"`
	// Operations limits span-metric queries to these span names (all when empty).
	Operations []string `yaml:"operations"`
	SLOs       SLOs     `yaml:"slos"`
	Rollback   Rollback `yaml:"rollback"`
	// Signals are the service's own request and error counts, for a
	// service without HTTP (server span) traffic, such as a queue consumer.
	Signals *Signals `yaml:"signals"`
}

// Signals are what a service without server spans counts instead: the
// verdict engine uses them as its traffic signal and, errors among
// requests, as its error ratio (and the total of its log error ratio); the
// availability SLO bounds the same ratio.
//
// Requests and Errors are each either a counter's name — Vigil counts its
// increase per step, series by series, in the series Selector selects — or
// PromQL giving the count per step, with the placeholders of custom signals
// ($selector, $version, $service, $step, $rate). Either must select the
// version under test, or every version would be counted as the new one.
type Signals struct {
	Requests string `yaml:"requests"`
	Errors   string `yaml:"errors"`
	// Selector selects the version's series of counters given by name:
	// label matchers without braces, with placeholders. Default $selector:
	// service, environment, namespace and version as the catalog has them,
	// and the service's matchers. Counters whose labels differ (an OTLP
	// metric carries job rather than service) say so:
	// 'job="mailer",version="$version"'.
	Selector string `yaml:"selector"`
	// Unit is what the counters count, for the verdict's texts (jobs,
	// messages); default requests.
	Unit string `yaml:"unit"`
}

// RequestsQuery is the PromQL counting the requests per step.
func (s Signals) RequestsQuery() string { return s.query(s.Requests) }

// ErrorsQuery is the PromQL counting the errors per step.
func (s Signals) ErrorsQuery() string { return s.query(s.Errors) }

var metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)

// query turns a counter's name into the count of its increase per step:
// series by series, a series that grew counts its growth, one new in the
// step or restarted from zero its whole value; summed.
func (s Signals) query(q string) string {
	if !metricNameRE.MatchString(q) {
		return q
	}
	sel := s.Selector
	if sel == "" {
		sel = "$selector"
	}
	return red.StepIncrease(q, sel, "$step")
}

func (s Signals) validate() error {
	if s.Requests == "" || s.Errors == "" {
		return errors.New("requests and errors: both required")
	}
	if s.Selector != "" && !metricNameRE.MatchString(s.Requests) && !metricNameRE.MatchString(s.Errors) {
		return errors.New("selector: only for counters given by name; the PromQL of requests and errors has its own")
	}
	render := strings.NewReplacer("$selector", `service="x",version="v"`, "$version", "v", "$service", `service="x"`, "$step", "15s", "$rate", "1m")
	for _, f := range []struct{ key, q string }{{"requests", s.RequestsQuery()}, {"errors", s.ErrorsQuery()}} {
		if !strings.Contains(f.q, "$selector") && !strings.Contains(f.q, "$version") {
			return fmt.Errorf("%s: %q selects no version: use $selector (or $version) so that only the version under test is counted", f.key, f.q)
		}
		if _, err := parser.NewParser(parser.Options{}).ParseExpr(render.Replace(f.q)); err != nil {
			return fmt.Errorf("%s: %q: %w", f.key, f.q, err)
		}
	}
	return nil
}

// SLOs are a service's objectives. A nil objective is not generated.
type SLOs struct {
	Availability *AvailabilitySLO `yaml:"availability"`
	Latency      *LatencySLO      `yaml:"latency"`
}

// AvailabilitySLO is the share of server spans that do not end in an error.
type AvailabilitySLO struct {
	// Objective in percent, e.g. 99.9.
	Objective float64 `yaml:"objective"`
	// Window is the compliance period; the catalog default when unset.
	Window model.Duration `yaml:"window"`
}

// LatencySLO is the share of server spans faster than Threshold.
type LatencySLO struct {
	Objective float64        `yaml:"objective"`
	Threshold model.Duration `yaml:"threshold"`
	Window    model.Duration `yaml:"window"`
}

// Rollback says how Vigil rolls the service back on a rollback verdict.
// Both actions are optional; with neither, Vigil only reports.
type Rollback struct {
	// Mode is what Vigil does with a rollback verdict: ModeEnforce runs the
	// actions, ModeShadow records what they would have done (wouldAct) and
	// calls nothing. Default: enforce where automatic is true, else shadow.
	Mode string `yaml:"mode"`
	// Automatic is the older spelling of mode: enforce.
	Automatic bool `yaml:"automatic"`
	// AfterPromotion lets a regression found by the watch after a
	// promotion (deploy.watch) be acted on, in enforce mode.
	AfterPromotion bool                `yaml:"after_promotion"`
	Kubernetes     *KubernetesRollback `yaml:"kubernetes"`
	Webhook        *WebhookRollback    `yaml:"webhook"`
}

// Rollback modes.
const (
	ModeEnforce = "enforce"
	ModeShadow  = "shadow"
)

// Enforced reports whether rollback verdicts are acted on.
func (r Rollback) Enforced() bool { return r.Mode == ModeEnforce }

// KubernetesRollback names the workload Vigil rolls back in Kubernetes.
// Before acting, Vigil checks that the workload still runs the version the
// verdict condemned (see deploy.KubernetesActor) and refuses otherwise.
type KubernetesRollback struct {
	// Kind is the workload's kind: Deployment (the default), StatefulSet,
	// DaemonSet, or Rollout (Argo Rollouts, which Vigil aborts).
	Kind      string `yaml:"kind"`
	Namespace string `yaml:"namespace"`
	// Name is the workload's name; the service's name when unset.
	Name string `yaml:"name"`
	// Deployment is the older spelling of name, for kind Deployment.
	Deployment string `yaml:"deployment"`
	// Container names the container whose image tag is the version the
	// workload runs, when its pod template has no app.kubernetes.io/version
	// label. Unset: the only container, or the one named like the service.
	Container string `yaml:"container"`
}

// Kinds of workload rollback.kubernetes.kind accepts.
const (
	KindDeployment  = "Deployment"
	KindStatefulSet = "StatefulSet"
	KindDaemonSet   = "DaemonSet"
	KindRollout     = "Rollout"
)

// WebhookRollback is called with a JSON body describing the verdict.
type WebhookRollback struct {
	URL string `yaml:"url"`
	// BearerTokenFile holds the token sent as Authorization: Bearer.
	BearerTokenFile string `yaml:"bearer_token_file"`
}

const defaultSLOWindow = model.Duration(30 * 24 * time.Hour)

var nameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_.\-]*$`)

// Load reads, defaults and validates a catalog file.
func Load(path string) (*Catalog, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("catalog %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes a catalog, applies defaults and validates it. Unknown keys
// are rejected with their path and line.
func Parse(b []byte) (*Catalog, error) {
	var c Catalog
	if err := yamlconf.Decode(b, &c); err != nil {
		return nil, err
	}
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Catalog) applyDefaults() {
	if c.Defaults.SLOWindow == 0 {
		c.Defaults.SLOWindow = defaultSLOWindow
	}
	for i := range c.Services {
		s := &c.Services[i]
		if s.Environment == "" {
			s.Environment = c.Defaults.Environment
		}
		if s.Namespace == "" {
			s.Namespace = c.Defaults.Namespace
		}
		if s.RunbookURL == "" {
			s.RunbookURL = c.Defaults.RunbookURL
		}
		if a := s.SLOs.Availability; a != nil && a.Window == 0 {
			a.Window = c.Defaults.SLOWindow
		}
		if l := s.SLOs.Latency; l != nil && l.Window == 0 {
			l.Window = c.Defaults.SLOWindow
		}
		if s.Rollback.Mode == "" {
			s.Rollback.Mode = ModeShadow
			if s.Rollback.Automatic {
				s.Rollback.Mode = ModeEnforce
			}
		}
		if k := s.Rollback.Kubernetes; k != nil {
			if k.Namespace == "" {
				k.Namespace = s.Namespace
			}
			if k.Kind == "" {
				k.Kind = KindDeployment
			}
			if k.Name == "" {
				k.Name = k.Deployment
			}
			if k.Name == "" {
				k.Name = s.Name
			}
		}
	}
	sort.SliceStable(c.Services, func(i, j int) bool { return c.Services[i].Name < c.Services[j].Name })
}

// Validate reports the first problem, naming the service and key.
func (c *Catalog) Validate() error {
	if len(c.Services) == 0 {
		return errors.New("services: at least one service is required")
	}
	seen := map[string]bool{}
	for i, s := range c.Services {
		at := fmt.Sprintf("services[%d]", i)
		if s.Name != "" {
			at = fmt.Sprintf("services[%s]", s.Name)
		}
		if !nameRE.MatchString(s.Name) {
			return fmt.Errorf("%s.name: %q is not a valid service name", at, s.Name)
		}
		key := s.Name + "\xff" + s.Environment
		if seen[key] {
			return fmt.Errorf("%s: service listed twice for environment %q", at, s.Environment)
		}
		seen[key] = true
		if s.Matchers != "" {
			if _, err := parser.NewParser(parser.Options{}).ParseMetricSelector("{" + s.Matchers + "}"); err != nil {
				return fmt.Errorf("%s.matchers: %w", at, err)
			}
		}
		if a := s.SLOs.Availability; a != nil {
			if err := checkObjective(a.Objective); err != nil {
				return fmt.Errorf("%s.slos.availability.objective: %w", at, err)
			}
		}
		if l := s.SLOs.Latency; l != nil {
			if err := checkObjective(l.Objective); err != nil {
				return fmt.Errorf("%s.slos.latency.objective: %w", at, err)
			}
			if l.Threshold <= 0 {
				return fmt.Errorf("%s.slos.latency.threshold: must be a positive duration such as 300ms", at)
			}
		}
		if k := s.Rollback.Kubernetes; k != nil {
			if err := k.validate(); err != nil {
				return fmt.Errorf("%s.rollback.kubernetes.%w", at, err)
			}
		}
		if w := s.Rollback.Webhook; w != nil && w.URL == "" {
			return fmt.Errorf("%s.rollback.webhook.url: required", at)
		}
		switch r := s.Rollback; {
		case r.Mode != ModeEnforce && r.Mode != ModeShadow:
			return fmt.Errorf("%s.rollback.mode: %q is not %s or %s", at, r.Mode, ModeShadow, ModeEnforce)
		case r.Automatic && r.Mode == ModeShadow:
			return fmt.Errorf("%s.rollback.automatic: true means mode: enforce; drop it to run in shadow mode", at)
		case r.Automatic && r.Kubernetes == nil && r.Webhook == nil:
			return fmt.Errorf("%s.rollback.automatic: needs rollback.kubernetes or rollback.webhook", at)
		case r.Mode == ModeEnforce && r.Kubernetes == nil && r.Webhook == nil:
			return fmt.Errorf("%s.rollback.mode: enforce needs rollback.kubernetes or rollback.webhook", at)
		}
		if sg := s.Signals; sg != nil {
			if err := sg.validate(); err != nil {
				return fmt.Errorf("%s.signals.%w", at, err)
			}
		}
	}
	return nil
}

func (k *KubernetesRollback) validate() error {
	switch k.Kind {
	case KindDeployment, KindStatefulSet, KindDaemonSet, KindRollout:
	default:
		return fmt.Errorf("kind: %q is not one of %s, %s, %s, %s", k.Kind, KindDeployment, KindStatefulSet, KindDaemonSet, KindRollout)
	}
	if k.Namespace == "" {
		return errors.New("namespace: required (or set the service's namespace)")
	}
	if k.Deployment != "" && k.Kind != KindDeployment {
		return fmt.Errorf("deployment: only for kind %s; name the %s with name", KindDeployment, k.Kind)
	}
	if k.Deployment != "" && k.Name != k.Deployment {
		return fmt.Errorf("deployment: %q and name %q disagree; keep name only", k.Deployment, k.Name)
	}
	if !dnsLabelRE.MatchString(k.Namespace) {
		return fmt.Errorf("namespace: %q is not a valid Kubernetes namespace", k.Namespace)
	}
	if len(k.Name) > 253 || !dnsSubdomainRE.MatchString(k.Name) {
		return fmt.Errorf("name: %q is not a valid Kubernetes object name (set name when the service's is not one)", k.Name)
	}
	if k.Container != "" && !dnsLabelRE.MatchString(k.Container) {
		return fmt.Errorf("container: %q is not a valid container name", k.Container)
	}
	return nil
}

// Kubernetes names: a namespace is a DNS label, a workload a DNS subdomain.
var (
	dnsLabelRE     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	dnsSubdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

func checkObjective(o float64) error {
	if !(o > 0 && o < 100) {
		return fmt.Errorf("%v must be a percentage between 0 and 100, such as 99.9", o)
	}
	return nil
}

// Service returns the named service in environment env ("" matches any).
func (c *Catalog) Service(name, env string) (Service, bool) {
	for _, s := range c.Services {
		if s.Name == name && (env == "" || s.Environment == env) {
			return s, true
		}
	}
	return Service{}, false
}

// Selector returns the PromQL label matchers that select this service's
// derived series, without braces: service="checkout",environment="prod",...
func (s Service) Selector() string {
	sel := fmt.Sprintf("service=%q", s.Name)
	if s.Namespace != "" {
		sel += fmt.Sprintf(",namespace=%q", s.Namespace)
	}
	if s.Environment != "" {
		sel += fmt.Sprintf(",environment=%q", s.Environment)
	}
	if s.Matchers != "" {
		sel += "," + s.Matchers
	}
	return sel
}

// MatcherLabels are the label names the service's matchers name, in order.
func (s Service) MatcherLabels() []string {
	var out []string
	for _, m := range s.matchers() {
		out = append(out, m.Name)
	}
	return out
}

// MatchersOn returns, without braces, the service's matchers on the labels
// carried says a series has: a matcher on a label a series never has would
// make its selector match nothing.
func (s Service) MatchersOn(carried func(label string) bool) string {
	var out []string
	for _, m := range s.matchers() {
		if carried(m.Name) {
			out = append(out, m.String())
		}
	}
	return strings.Join(out, ",")
}

func (s Service) matchers() []*labels.Matcher {
	if s.Matchers == "" {
		return nil
	}
	ms, err := parser.NewParser(parser.Options{}).ParseMetricSelector("{" + s.Matchers + "}")
	if err != nil {
		return nil // Validate reports it
	}
	return ms
}

// ErrorBudget is the allowed failure ratio for an objective in percent.
func ErrorBudget(objective float64) float64 { return 1 - objective/100 }
