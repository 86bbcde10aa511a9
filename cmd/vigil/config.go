package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/vigilhq/vigil/collector"
	"github.com/vigilhq/vigil/collector/hotpath"
	"github.com/vigilhq/vigil/collector/logmetrics"
	"github.com/vigilhq/vigil/collector/loki"
	"github.com/vigilhq/vigil/collector/otlp"
	"github.com/vigilhq/vigil/collector/remotewrite"
	"github.com/vigilhq/vigil/collector/spanmetrics"
	"github.com/vigilhq/vigil/collector/streamaggr"
	"github.com/vigilhq/vigil/deploy"
	"github.com/vigilhq/vigil/internal/yamlconf"
	"github.com/vigilhq/vigil/query"
	"github.com/vigilhq/vigil/storage"
	"github.com/vigilhq/vigil/storage/otlpforward"
)

// Config is the whole of vigil.yml. Every section is optional; what is left
// out keeps the default of DefaultConfig.
type Config struct {
	Web               WebConfig               `yaml:"web"`
	Storage           storage.Config          `yaml:"storage"`
	Query             query.Config            `yaml:"query"`
	Receivers         ReceiversConfig         `yaml:"receivers"`
	Ingest            hotpath.Config          `yaml:"ingest"`
	StreamAggregation []streamaggr.RuleConfig `yaml:"stream_aggregation"`
	SpanMetrics       spanmetrics.Config      `yaml:"span_metrics"`
	LogMetrics        logmetrics.Config       `yaml:"log_metrics"`
	Deploy            deploy.Config           `yaml:"deploy"`
	Global            GlobalConfig            `yaml:"global"`
	RuleFiles         []string                `yaml:"rule_files"`
	Rules             RulesConfig             `yaml:"rules"`
	Alerting          AlertingSection         `yaml:"alerting"`
	Notifier          NotifierConfig          `yaml:"notifier"`
	RemoteWrite       RemoteWriteSection      `yaml:"remote_write"`
	RemoteRead        RemoteReadSection       `yaml:"remote_read"`
	OTLPForward       []otlpforward.Config    `yaml:"otlp_forward"`
}

// WebConfig is the HTTP server that carries the API, ingest and self-metrics.
type WebConfig struct {
	ListenAddress   string         `yaml:"listen_address"`
	ReadTimeout     model.Duration `yaml:"read_timeout"`
	MaxConnections  int            `yaml:"max_connections"`
	ShutdownTimeout model.Duration `yaml:"shutdown_timeout"`
	// ExternalURL is the URL Vigil is reached at (alerts link to it); by
	// default http://<listen_address>.
	ExternalURL string `yaml:"external_url"`
	// EnableLifecycle turns on POST /-/reload.
	EnableLifecycle bool `yaml:"enable_lifecycle"`
	// AdminTokenFile, when set, holds the bearer token that endpoints which
	// act (/-/reload) require.
	AdminTokenFile string `yaml:"admin_token_file"`
}

// ReceiversConfig configures the ingest endpoints.
type ReceiversConfig struct {
	RemoteWrite remotewrite.Config `yaml:"remote_write"`
	OTLP        otlp.Config        `yaml:"otlp"`
	Loki        loki.Config        `yaml:"loki"`
	// Limits bound the ingest requests processed at once (all HTTP and gRPC receivers).
	Limits collector.LimitConfig `yaml:"limits"`
}

// DefaultConfig is what `vigil serve` runs with when given nothing.
func DefaultConfig() Config {
	return Config{
		Web: WebConfig{
			ListenAddress:   "127.0.0.1:9400",
			ReadTimeout:     model.Duration(5 * time.Minute),
			MaxConnections:  512,
			ShutdownTimeout: model.Duration(30 * time.Second),
			EnableLifecycle: true,
		},
		Storage: storage.DefaultConfig(),
		Query:   query.DefaultConfig(),
		Receivers: ReceiversConfig{
			RemoteWrite: remotewrite.DefaultConfig(),
			OTLP:        otlp.DefaultConfig(),
			Loki:        loki.DefaultConfig(),
			Limits:      collector.DefaultLimitConfig(),
		},
		Ingest:      hotpath.DefaultConfig(),
		SpanMetrics: spanmetrics.DefaultConfig(),
		LogMetrics:  logmetrics.DefaultConfig(),
		Deploy:      deploy.DefaultConfig(),
		Global:      GlobalConfig{EvaluationInterval: model.Duration(15 * time.Second)},
		Rules: RulesConfig{
			ForOutageTolerance: model.Duration(time.Hour),
			ForGracePeriod:     model.Duration(10 * time.Minute),
			ResendDelay:        model.Duration(time.Minute),
		},
		Notifier: NotifierConfig{QueueCapacity: 10000},
	}
}

// Validate checks every section, naming the section in the error.
func (c Config) Validate() error {
	var errs []error
	if err := c.Web.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Storage.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Query.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Receivers.RemoteWrite.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("receivers.remote_write.%w", err))
	}
	if err := c.Receivers.OTLP.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("receivers.otlp.%w", err))
	}
	if err := c.Receivers.Limits.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("receivers.limits.%w", err))
	}
	if err := c.Receivers.Loki.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("receivers.loki.%w", err))
	}
	if err := c.Ingest.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("ingest.%w", err))
	}
	for i, r := range c.StreamAggregation {
		if err := r.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("stream_aggregation[%d]: %w", i, err))
		}
	}
	if err := c.SpanMetrics.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("span_metrics.%w", err))
	}
	if err := c.LogMetrics.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("log_metrics.%w", err))
	}
	if err := c.Deploy.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("deploy.%w", err))
	}
	names := map[string]bool{}
	for i, f := range c.OTLPForward {
		f.Defaults()
		if err := f.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("otlp_forward[%d]: %w", i, err))
		}
		if names[f.Name] {
			errs = append(errs, fmt.Errorf("otlp_forward[%d]: name %q is used twice", i, f.Name))
		}
		names[f.Name] = true
	}
	for _, err := range []error{c.Global.validate(), c.Rules.validate(), c.Notifier.validate()} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Validate checks the web section.
func (w WebConfig) Validate() error {
	if _, _, err := net.SplitHostPort(w.ListenAddress); err != nil {
		return fmt.Errorf("web.listen_address %q: %w", w.ListenAddress, err)
	}
	if w.ReadTimeout <= 0 {
		return fmt.Errorf("web.read_timeout must be positive, got %s", w.ReadTimeout)
	}
	if w.MaxConnections < 0 {
		return fmt.Errorf("web.max_connections must not be negative, got %d", w.MaxConnections)
	}
	if w.ShutdownTimeout <= 0 {
		return fmt.Errorf("web.shutdown_timeout must be positive, got %s", w.ShutdownTimeout)
	}
	if w.ExternalURL != "" {
		if u, err := url.Parse(w.ExternalURL); err != nil || u.Scheme == "" || u.Host == "" {
			return fmt.Errorf("web.external_url %q must be an absolute URL", w.ExternalURL)
		}
	}
	return nil
}

// LoadConfigFile reads a config file over the defaults. An unknown key or a
// bad value is an error naming the key and its line.
func LoadConfigFile(path string) (Config, error) {
	cfg := DefaultConfig()
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("read config file: %w", err)
	}
	if err := yamlconf.Decode(b, &cfg); err != nil {
		return cfg, fmt.Errorf("parse config file %s: %w", path, err)
	}
	cfg.resolveRuleFiles(path)
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("invalid config file %s: %w", path, err)
	}
	return cfg, nil
}

// String renders the effective configuration as YAML for /api/v1/status/config.
func (c Config) String() string {
	b, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Sprintf("# cannot render config: %v\n", err)
	}
	return string(b)
}
