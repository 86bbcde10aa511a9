// Package alerting evaluates Prometheus recording and alerting rules over
// Vigil's own storage with Prometheus's rules manager, and sends the alerts
// to Alertmanagers over the v2 API with Prometheus's notifier. Both are the
// reference implementations, embedded: rule files, alert state, ALERTS and
// ALERTS_FOR_STATE series, the notifier's queue, retries and relabelling
// behave exactly as they do in Prometheus.
package alerting

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/notifier"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
)

// Config is what a reload can change.
type Config struct {
	// RuleFiles are file paths or globs of Prometheus rule files.
	RuleFiles []string
	// EvaluationInterval is the default interval of rule groups that set none.
	EvaluationInterval time.Duration
	// ExternalLabels are added to every alert sent (and usable in templates
	// as $externalLabels).
	ExternalLabels labels.Labels
	// ExternalURL is where Vigil is reached; alerts link to it.
	ExternalURL string
	// Alerting is Prometheus's `alerting:` block: alertmanagers (static
	// targets, scheme, path_prefix, timeout, api_version, basic_auth,
	// authorization, tls_config, relabel_configs) and alert_relabel_configs.
	Alerting promconfig.AlertingConfig
	// OutageTolerance is the longest outage after which a `for` state is
	// still restored from ALERTS_FOR_STATE (Prometheus: 1h).
	OutageTolerance time.Duration
	// ForGracePeriod is the least time an alert with `for` waits after a
	// restart before firing (Prometheus: 10m).
	ForGracePeriod time.Duration
	// ResendDelay is the least time between two sends of a firing alert (1m).
	ResendDelay time.Duration
}

// Validate checks the values; rule files are checked by CheckRuleFiles.
func (c Config) Validate() error {
	if c.EvaluationInterval <= 0 {
		return fmt.Errorf("evaluation_interval must be positive, got %s", c.EvaluationInterval)
	}
	if c.ExternalURL != "" {
		if _, err := url.Parse(c.ExternalURL); err != nil {
			return fmt.Errorf("external_url %q: %w", c.ExternalURL, err)
		}
	}
	if c.OutageTolerance < 0 || c.ForGracePeriod < 0 || c.ResendDelay < 0 {
		return errors.New("rules: for_outage_tolerance, for_grace_period and resend_delay must not be negative")
	}
	for i, am := range c.Alerting.AlertmanagerConfigs {
		for _, sd := range am.ServiceDiscoveryConfigs {
			if _, ok := sd.(discovery.StaticConfig); !ok {
				return fmt.Errorf("alerting.alertmanagers[%d]: only static_configs are supported, got %s", i, sd.Name())
			}
		}
	}
	return nil
}

// Options are the parts the manager works on.
type Options struct {
	Engine     promql.QueryEngine
	Queryable  storage.Queryable
	Appendable storage.AppendableV2
	// QueueCapacity bounds the alerts waiting to be sent (Prometheus: 10000).
	QueueCapacity int
	Logger        *slog.Logger
	Registerer    prometheus.Registerer
}

// Manager runs the rules and the notifier.
type Manager struct {
	rules    *rules.Manager
	notifier *notifier.Manager
	targets  chan map[string][]*targetgroup.Group
	logger   *slog.Logger
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu    sync.Mutex
	cfg   Config
	files []string
}

// New builds the manager and applies cfg; Start runs it. An invalid rule
// file is an error naming the file, line and problem.
func New(cfg Config, o Options) (*Manager, error) {
	if o.Engine == nil || o.Queryable == nil || o.Appendable == nil {
		return nil, errors.New("alerting: engine, queryable and appendable are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.QueueCapacity <= 0 {
		o.QueueCapacity = 10000
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		// Holds the latest target groups only: ApplyConfig replaces what the
		// notifier has not picked up yet.
		targets: make(chan map[string][]*targetgroup.Group, 1),
		logger:  o.Logger,
		cancel:  cancel,
	}
	m.notifier = notifier.NewManager(&notifier.Options{
		QueueCapacity:   o.QueueCapacity,
		DrainOnShutdown: true,
		Registerer:      o.Registerer,
	}, model.UTF8Validation, o.Logger.With("component", "notifier"))

	var extURL *url.URL
	if cfg.ExternalURL != "" {
		u, err := url.Parse(cfg.ExternalURL)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("external_url %q: %w", cfg.ExternalURL, err)
		}
		extURL = u
	} else {
		extURL = &url.URL{Scheme: "http", Host: "localhost:9400"}
	}
	m.rules = rules.NewManager(&rules.ManagerOptions{
		ExternalURL:     extURL,
		QueryFunc:       rules.EngineQueryFunc(o.Engine, o.Queryable),
		NotifyFunc:      rules.SendAlerts(m.notifier, extURL.String()),
		Context:         ctx,
		AppendableV2:    o.Appendable,
		Queryable:       o.Queryable,
		Logger:          o.Logger.With("component", "rule manager"),
		Registerer:      o.Registerer,
		OutageTolerance: cfg.OutageTolerance,
		ForGracePeriod:  cfg.ForGracePeriod,
		ResendDelay:     cfg.ResendDelay,
	})
	if err := m.ApplyConfig(cfg); err != nil {
		cancel()
		return nil, err
	}
	return m, nil
}

// Start runs rule evaluation and notification in the background.
func (m *Manager) Start() {
	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		m.notifier.Run(m.targets)
	}()
	go func() {
		defer m.wg.Done()
		m.rules.Run()
	}()
}

// Stop stops evaluating rules, then sends the alerts still queued and stops
// the notifier. Call it before storage closes.
func (m *Manager) Stop() {
	m.rules.Stop()
	m.cancel()
	m.notifier.Stop()
	m.wg.Wait()
}

// ApplyConfig checks the rule files and, only when all are valid, switches
// to the new rules and Alertmanagers. Alert state (pending, firing, `for`
// timers) carries over for rules that did not change, as in Prometheus.
// On error the running rules and Alertmanagers are left as they were.
func (m *Manager) ApplyConfig(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	files, err := CheckRuleFiles(cfg.RuleFiles)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()

	if err := m.notifier.ApplyConfig(&promconfig.Config{
		GlobalConfig: promconfig.GlobalConfig{
			ExternalLabels:             cfg.ExternalLabels,
			MetricNameValidationScheme: model.UTF8Validation,
		},
		AlertingConfig: cfg.Alerting,
	}); err != nil {
		return fmt.Errorf("apply alertmanager config: %w", err)
	}
	m.setTargets(cfg.Alerting)

	extURL := cfg.ExternalURL
	if extURL == "" {
		extURL = "http://localhost:9400"
	}
	if err := m.rules.Update(cfg.EvaluationInterval, files, cfg.ExternalLabels, extURL, nil); err != nil {
		return fmt.Errorf("load rules: %w", err)
	}
	m.cfg, m.files = cfg, files
	m.logger.Info("Rules loaded", "files", len(files), "groups", len(m.rules.RuleGroups()),
		"alertmanagers", len(cfg.Alerting.AlertmanagerConfigs))
	return nil
}

// setTargets hands the notifier the static Alertmanager targets, keyed as
// AlertmanagerConfigs.ToMap keys its sets.
func (m *Manager) setTargets(ac promconfig.AlertingConfig) {
	tgs := map[string][]*targetgroup.Group{}
	for key, amc := range ac.AlertmanagerConfigs.ToMap() {
		var groups []*targetgroup.Group
		for _, sd := range amc.ServiceDiscoveryConfigs {
			if sc, ok := sd.(discovery.StaticConfig); ok {
				for i, g := range sc {
					g.Source = fmt.Sprintf("%s/%d", key, i)
					groups = append(groups, g)
				}
			}
		}
		tgs[key] = groups
	}
	select {
	case <-m.targets:
	default:
	}
	m.targets <- tgs
}

// CheckRuleFiles expands the globs and parses every file as promtool check
// rules does. It returns the files, or an error naming each bad file with
// the line and problem.
func CheckRuleFiles(patterns []string) ([]string, error) {
	var files []string
	for _, pat := range patterns {
		matches, err := filepath.Glob(pat)
		if err != nil {
			return nil, fmt.Errorf("rule_files: pattern %q: %w", pat, err)
		}
		files = append(files, matches...)
	}
	slices.Sort(files)
	files = slices.Compact(files)
	p := parser.NewParser(parser.Options{})
	var errs []error
	for _, fn := range files {
		if _, fileErrs := rulefmt.ParseFile(fn, false, model.UTF8Validation, p, nil); len(fileErrs) > 0 {
			for _, e := range fileErrs {
				if !strings.Contains(e.Error(), fn) {
					e = fmt.Errorf("%s: %w", fn, e)
				}
				errs = append(errs, fmt.Errorf("rule file %w", e))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return files, nil
}
