package main

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	yamlv2 "go.yaml.in/yaml/v2"
	"go.yaml.in/yaml/v3"

	"github.com/vigilhq/vigil/alerting"
	"github.com/vigilhq/vigil/query"
	"github.com/vigilhq/vigil/storage"
)

// GlobalConfig holds Prometheus's `global:` keys that Vigil uses.
type GlobalConfig struct {
	// EvaluationInterval is how often rule groups are evaluated unless they
	// set their own interval.
	EvaluationInterval model.Duration `yaml:"evaluation_interval"`
	// ExternalLabels are added to alerts sent to Alertmanager.
	ExternalLabels labels.Labels `yaml:"external_labels,omitempty"`
}

// RulesConfig tunes alert state handling, as Prometheus's --rules.* flags do.
type RulesConfig struct {
	ForOutageTolerance model.Duration `yaml:"for_outage_tolerance"`
	ForGracePeriod     model.Duration `yaml:"for_grace_period"`
	ResendDelay        model.Duration `yaml:"resend_delay"`
}

// NotifierConfig tunes the queue of alerts waiting for Alertmanager.
type NotifierConfig struct {
	QueueCapacity int `yaml:"queue_capacity"`
}

// AlertingSection is Prometheus's `alerting:` block, decoded strictly by
// Prometheus's own config types so every key means what it does there.
type AlertingSection struct {
	promconfig.AlertingConfig `yaml:",inline"`
}

// decodePrometheusYAML decodes a block of vigil.yml into one of Prometheus's
// config types with Prometheus's own decoder (yaml v2, strict), so every key
// means what it does in prometheus.yml; errors keep the file's line numbers.
func decodePrometheusYAML(n *yaml.Node, out any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	if err := yamlv2.UnmarshalStrict(b, out); err != nil {
		return errors.New(cleanYAMLv2Error(shiftLines(err.Error(), n.Line-1)))
	}
	return nil
}

// UnmarshalYAML decodes the block with Prometheus's decoder (yaml v2, strict).
func (a *AlertingSection) UnmarshalYAML(n *yaml.Node) error {
	var ac promconfig.AlertingConfig
	if err := decodePrometheusYAML(n, &ac); err != nil {
		return err
	}
	for i, am := range ac.AlertmanagerConfigs {
		if am.Scheme != "http" && am.Scheme != "https" {
			return fmt.Errorf("alerting.alertmanagers[%d]: scheme %q: want http or https", i, am.Scheme)
		}
		if err := am.HTTPClientConfig.Validate(); err != nil {
			return fmt.Errorf("alerting.alertmanagers[%d]: %w", i, err)
		}
	}
	a.AlertingConfig = ac
	return nil
}

// MarshalYAML renders the block for /api/v1/status/config (secrets hidden).
func (a AlertingSection) MarshalYAML() (any, error) { return a.AlertingConfig, nil }

var (
	lineRE     = regexp.MustCompile(`line (\d+)`)
	notFoundRE = regexp.MustCompile(`field (\S+) not found in type \S+`)
)

// cleanYAMLv2Error words yaml v2's strict errors as yamlconf words its own.
func cleanYAMLv2Error(msg string) string {
	msg = strings.TrimPrefix(msg, "yaml: unmarshal errors:\n")
	msg = notFoundRE.ReplaceAllString(msg, `unknown key "$1"`)
	return strings.TrimSpace(msg)
}

// shiftLines makes "line N" in a yaml error count from the file's start.
func shiftLines(msg string, by int) string {
	return lineRE.ReplaceAllStringFunc(msg, func(s string) string {
		n, _ := strconv.Atoi(strings.TrimPrefix(s, "line "))
		return fmt.Sprintf("line %d", n+by)
	})
}

func (g GlobalConfig) validate() error {
	if g.EvaluationInterval <= 0 {
		return fmt.Errorf("global.evaluation_interval must be positive, got %s", g.EvaluationInterval)
	}
	if err := g.ExternalLabels.Validate(func(l labels.Label) error {
		if !model.UTF8Validation.IsValidLabelName(l.Name) {
			return fmt.Errorf("global.external_labels: %q is not a valid label name", l.Name)
		}
		return nil
	}); err != nil {
		return err
	}
	return nil
}

func (r RulesConfig) validate() error {
	if r.ForOutageTolerance < 0 || r.ForGracePeriod < 0 || r.ResendDelay < 0 {
		return errors.New("rules: for_outage_tolerance, for_grace_period and resend_delay must not be negative")
	}
	return nil
}

func (n NotifierConfig) validate() error {
	if n.QueueCapacity <= 0 {
		return fmt.Errorf("notifier.queue_capacity must be positive, got %d", n.QueueCapacity)
	}
	return nil
}

// resolveRuleFiles makes relative rule_files relative to the config file's
// directory, as Prometheus does.
func (c *Config) resolveRuleFiles(configPath string) {
	dir := filepath.Dir(configPath)
	for i, f := range c.RuleFiles {
		if f != "" && !filepath.IsAbs(f) {
			c.RuleFiles[i] = filepath.Join(dir, f)
		}
	}
}

// alertingConfig is the part of the config that the rules manager and the
// notifier use, and that a reload can change.
func (c Config) alertingConfig() alerting.Config {
	ext := c.Web.ExternalURL
	if ext == "" {
		ext = "http://" + c.Web.ListenAddress
	}
	return alerting.Config{
		RuleFiles:          c.RuleFiles,
		EvaluationInterval: time.Duration(c.Global.EvaluationInterval),
		ExternalLabels:     c.Global.ExternalLabels,
		ExternalURL:        ext,
		Alerting:           c.Alerting.AlertingConfig,
		OutageTolerance:    time.Duration(c.Rules.ForOutageTolerance),
		ForGracePeriod:     time.Duration(c.Rules.ForGracePeriod),
		ResendDelay:        time.Duration(c.Rules.ResendDelay),
	}
}

// newAlerting builds the rules manager and notifier over storage.
func newAlerting(cfg Config, store *storage.Storage, engine *query.Engine, logger *slog.Logger, reg prometheus.Registerer) (*alerting.Manager, error) {
	m, err := alerting.New(cfg.alertingConfig(), alerting.Options{
		Engine:        engine,
		Queryable:     store,
		Appendable:    store,
		QueueCapacity: cfg.Notifier.QueueCapacity,
		Logger:        logger,
		Registerer:    reg,
	})
	if err != nil {
		return nil, fmt.Errorf("start rule evaluation: %w", err)
	}
	return m, nil
}

// reloader re-reads the configuration on SIGHUP and POST /-/reload and
// applies what can change at run time: rule files, Alertmanagers, external
// labels. A bad file leaves everything running as it was.
type reloader struct {
	load    func() (Config, error)
	apply   func(Config) error
	logger  *slog.Logger
	token   string // when set, POST /-/reload needs it as a bearer token
	enabled bool   // web.enable_lifecycle

	mu      sync.Mutex
	success prometheus.Gauge
	last    prometheus.Gauge
}

func newReloader(cfg Config, load func() (Config, error), apply func(Config) error, logger *slog.Logger, reg prometheus.Registerer) (*reloader, error) {
	r := &reloader{
		load: load, apply: apply, logger: logger, enabled: cfg.Web.EnableLifecycle,
		success: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_config_last_reload_successful", Help: "Whether the last configuration reload attempt was successful.",
		}),
		last: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_config_last_reload_success_timestamp_seconds", Help: "Timestamp of the last successful configuration reload.",
		}),
	}
	if cfg.Web.AdminTokenFile != "" {
		b, err := os.ReadFile(cfg.Web.AdminTokenFile)
		if err != nil {
			return nil, fmt.Errorf("read web.admin_token_file: %w", err)
		}
		r.token = strings.TrimSpace(string(b))
		if r.token == "" {
			return nil, fmt.Errorf("web.admin_token_file %s is empty", cfg.Web.AdminTokenFile)
		}
	}
	reg.MustRegister(r.success, r.last)
	r.success.Set(1)
	r.last.SetToCurrentTime()
	return r, nil
}

// reload loads and applies the configuration once.
func (r *reloader) reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cfg, err := r.load()
	if err == nil {
		err = r.apply(cfg)
	}
	if err != nil {
		r.success.Set(0)
		r.logger.Error("Reloading the configuration failed; the previous configuration keeps running", "err", err)
		return err
	}
	r.success.Set(1)
	r.last.SetToCurrentTime()
	r.logger.Info("Configuration reloaded")
	return nil
}

// ServeHTTP answers POST /-/reload as Prometheus does: 200 when the new
// configuration is running, 500 with the problem when it is not.
func (r *reloader) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if !r.enabled {
		http.Error(w, "Lifecycle API is not enabled (web.enable_lifecycle).", http.StatusForbidden)
		return
	}
	if req.Method != http.MethodPost && req.Method != http.MethodPut {
		w.Header().Set("Allow", "POST, PUT")
		http.Error(w, "Only POST or PUT requests allowed.", http.StatusMethodNotAllowed)
		return
	}
	if r.token != "" {
		got, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(r.token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vigil"`)
			http.Error(w, "Unauthorized: a valid bearer token (web.admin_token_file) is required.", http.StatusUnauthorized)
			return
		}
	}
	if err := r.reload(); err != nil {
		http.Error(w, fmt.Sprintf("failed to reload config: %s", err), http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, "Configuration reloaded.")
}
