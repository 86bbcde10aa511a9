// Package config is vigil.yml: the whole configuration of `vigil serve`, its
// defaults, validation and loading. Prometheus's own blocks (alerting,
// remote_write, remote_read) are decoded by Prometheus's config types so that
// every key means what it does in prometheus.yml.
//
// Every error names the key it is about, as a dotted path from the top of
// the file (e.g. "receivers.otlp.grpc.listen_address: ...").
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/vigilhq/vigil/collector"
	"github.com/vigilhq/vigil/collector/evidence"
	"github.com/vigilhq/vigil/collector/hotpath"
	"github.com/vigilhq/vigil/collector/logmetrics"
	"github.com/vigilhq/vigil/collector/loki"
	"github.com/vigilhq/vigil/collector/otlp"
	"github.com/vigilhq/vigil/collector/remotewrite"
	"github.com/vigilhq/vigil/collector/spanmetrics"
	"github.com/vigilhq/vigil/collector/streamaggr"
	"github.com/vigilhq/vigil/deploy"
	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/internal/yamlconf"
	"github.com/vigilhq/vigil/query"
	"github.com/vigilhq/vigil/storage"
	"github.com/vigilhq/vigil/storage/otlpforward"
	"github.com/vigilhq/vigil/ui"
)

// Config is the whole of vigil.yml. Every section is optional; what is left
// out keeps the default of DefaultConfig.
type Config struct {
	Web               WebConfig               `yaml:"web"`
	Storage           storage.Config          `yaml:"storage"`
	Query             query.Config            `yaml:"query"`
	Receivers         ReceiversConfig         `yaml:"receivers"`
	Collector         CollectorConfig         `yaml:"collector"`
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
	Auth              auth.Config             `yaml:"auth"`
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
	// ConfigFile is Prometheus's web configuration file (TLS, basic-auth
	// users, response headers), as --web.config.file.
	ConfigFile string `yaml:"config_file"`
	// AllowUnauthenticated lets Vigil serve a non-loopback address with no
	// authentication (no auth.tokens, no basic-auth users, no client
	// certificates). Without it, Vigil refuses to start so.
	AllowUnauthenticated bool `yaml:"allow_unauthenticated"`
	// TraceURLTemplate links the trace ids of the web UI's verdict pages to
	// a tracing UI: {trace_id} in it is replaced by the id, e.g.
	// http://jaeger:16686/trace/{trace_id}.
	TraceURLTemplate string `yaml:"trace_url_template"`
	// GrafanaURL, when set, sends the UI's /graph links (Alertmanager's
	// "Source", the verdicts' queries) to Grafana's Explore on the
	// datasource GrafanaDatasourceUID ("vigil", as `vigil gen dashboards`
	// provisions it).
	GrafanaURL           string `yaml:"grafana_url"`
	GrafanaDatasourceUID string `yaml:"grafana_datasource_uid"`
	// AdminTokenFile is no longer supported (auth.tokens replaces it); the
	// key is kept only to say so.
	AdminTokenFile string `yaml:"admin_token_file,omitempty"`
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

			GrafanaDatasourceUID: "vigil",
		},
		Storage: storage.DefaultConfig(),
		Query:   query.DefaultConfig(),
		Receivers: ReceiversConfig{
			RemoteWrite: remotewrite.DefaultConfig(),
			OTLP:        otlp.DefaultConfig(),
			Loki:        loki.DefaultConfig(),
			Limits:      collector.DefaultLimitConfig(),
		},
		Collector:   CollectorConfig{EvidenceForward: EvidenceForwardSection{evidence.DefaultForwardConfig()}},
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

// Validate checks every section. The convention for every error in
// vigil.yml: a section's own Validate names its keys relative to the section
// ("window must be positive"), and Validate prefixes the section's path
// ("deploy.window must be positive"), so the message names the full key.
func (c Config) Validate() error {
	sections := []struct {
		path     string
		validate func() error
	}{
		{"web", c.Web.Validate},
		{"storage", c.Storage.Validate},
		{"query", c.Query.Validate},
		{"receivers.remote_write", c.Receivers.RemoteWrite.Validate},
		{"receivers.otlp", c.Receivers.OTLP.Validate},
		{"receivers.limits", c.Receivers.Limits.Validate},
		{"receivers.loki", c.Receivers.Loki.Validate},
		{"collector", c.Collector.Validate},
		{"ingest", c.Ingest.Validate},
		{"span_metrics", c.SpanMetrics.Validate},
		{"log_metrics", c.LogMetrics.Validate},
		{"deploy", c.Deploy.Validate},
		{"global", c.Global.Validate},
		{"rules", c.Rules.Validate},
		{"notifier", c.Notifier.Validate},
		{"auth", c.Auth.Validate},
	}
	var errs []error
	for _, s := range sections {
		if err := s.validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s.%w", s.path, err))
		}
	}
	for i, r := range c.StreamAggregation {
		if err := r.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("stream_aggregation[%d]: %w", i, err))
		}
	}
	if err := c.checkDerivedWriters(); err != nil {
		errs = append(errs, err)
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
	return errors.Join(errs...)
}

// Validate checks the web section.
func (w WebConfig) Validate() error {
	if _, _, err := net.SplitHostPort(w.ListenAddress); err != nil {
		return fmt.Errorf("listen_address %q: %w", w.ListenAddress, err)
	}
	if w.ReadTimeout <= 0 {
		return fmt.Errorf("read_timeout must be positive, got %s", w.ReadTimeout)
	}
	if w.MaxConnections < 0 {
		return fmt.Errorf("max_connections must not be negative, got %d", w.MaxConnections)
	}
	if w.ShutdownTimeout <= 0 {
		return fmt.Errorf("shutdown_timeout must be positive, got %s", w.ShutdownTimeout)
	}
	if w.ExternalURL != "" {
		if u, err := url.Parse(w.ExternalURL); err != nil || u.Scheme == "" || u.Host == "" {
			return fmt.Errorf("external_url %q must be an absolute URL", w.ExternalURL)
		}
	}
	if err := ui.ValidateTraceURLTemplate(w.TraceURLTemplate); err != nil {
		return err
	}
	if w.GrafanaURL != "" {
		if u, err := url.Parse(w.GrafanaURL); err != nil || u.Scheme == "" || u.Host == "" {
			return fmt.Errorf("grafana_url %q must be an absolute URL", w.GrafanaURL)
		}
	}
	if w.AdminTokenFile != "" {
		return fmt.Errorf("admin_token_file is no longer supported: scoped tokens replace it. Keep the file as an admin token and give the other clients tokens of their own:\n"+
			"  auth:\n    tokens:\n      - {name: ops, token_file: %s, scopes: [admin]}\n"+
			"      - {name: agents, token_file: /etc/vigil/agents.token, scopes: [write]}\n"+
			"      - {name: grafana, token_file: /etc/vigil/grafana.token, scopes: [read]}\n"+
			"      - {name: ci, token_file: /etc/vigil/ci.token, scopes: [deploy]}\n"+
			"(see docs/security.md)", w.AdminTokenFile)
	}
	return nil
}

// LoadFile reads a config file over the defaults. An unknown key or a bad
// value is an error naming the key and its line.
func LoadFile(path string) (Config, error) {
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

// ExternalURL is the URL users and Alertmanager reach Vigil at:
// web.external_url, or http://<web.listen_address> when it is not set.
func (c Config) ExternalURL() string {
	if c.Web.ExternalURL != "" {
		return c.Web.ExternalURL
	}
	return "http://" + c.Web.ListenAddress
}

// DeployConfig is the deploy section with what it inherits from web: the
// external URL verdict links point at.
func (c Config) DeployConfig() deploy.Config {
	d := c.Deploy
	if d.ExternalURL == "" {
		d.ExternalURL = c.ExternalURL()
	}
	return d
}

// String renders the effective configuration as YAML for
// /api/v1/status/config, with every secret shown as <secret>, as Prometheus
// shows its own: header values (they carry bearer tokens and tenant keys),
// and any key that names a password, token or secret (the files that hold
// them are paths, not secrets, and are shown).
func (c Config) String() string {
	var doc yaml.Node
	if err := doc.Encode(c); err != nil {
		return fmt.Sprintf("# cannot render config: %v\n", err)
	}
	hideSecrets(&doc, false)
	b, err := yaml.Marshal(&doc)
	if err != nil {
		return fmt.Sprintf("# cannot render config: %v\n", err)
	}
	return string(b)
}

// secretMark is what a hidden secret renders as (Prometheus's config.Secret does the same).
const secretMark = "<secret>"

// hideSecrets replaces secret scalars under n; inHeaders is true below a
// headers: mapping, all of whose values are secret.
func hideSecrets(n *yaml.Node, inHeaders bool) {
	switch n.Kind {
	case yaml.ScalarNode:
		if inHeaders && n.Value != "" {
			n.Value, n.Tag, n.Style = secretMark, "!!str", 0
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i].Value, n.Content[i+1]
			switch {
			case k == "headers" || k == "http_headers":
				hideSecrets(v, true)
			case v.Kind == yaml.ScalarNode && isSecretKey(k) && v.Value != "":
				v.Value, v.Tag, v.Style = secretMark, "!!str", 0
			default:
				hideSecrets(v, inHeaders)
			}
		}
	default:
		for _, c := range n.Content {
			hideSecrets(c, inHeaders)
		}
	}
}

// isSecretKey reports whether a key holds a secret inline (not a file name).
func isSecretKey(k string) bool {
	if strings.HasSuffix(k, "_file") || strings.HasSuffix(k, "_files") {
		return false
	}
	for _, s := range []string{"password", "token", "secret", "credentials", "api_key"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// checkDerivedWriters refuses writers in ingest.accept_derived_series_from
// that can never write: "anonymous" when tokens authenticate every
// request, a token without the write scope.
func (c Config) checkDerivedWriters() error {
	for _, w := range c.Ingest.AcceptDerivedSeriesFrom {
		if w == auth.Anonymous.Name && c.Auth.Enabled() {
			return fmt.Errorf("ingest.accept_derived_series_from: %q is the writer only when authentication is off; with auth.tokens name the collectors' token", w)
		}
		for _, t := range c.Auth.Tokens {
			if t.Name == w && !slices.Contains(t.Scopes, auth.ScopeWrite) {
				return fmt.Errorf("ingest.accept_derived_series_from: token %q has no write scope", w)
			}
		}
	}
	return nil
}
