package config

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	yamlv2 "go.yaml.in/yaml/v2"
	"go.yaml.in/yaml/v3"

	"github.com/vigilhq/vigil/alerting"
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

// Validate checks the global section.
func (g GlobalConfig) Validate() error {
	if g.EvaluationInterval <= 0 {
		return fmt.Errorf("evaluation_interval must be positive, got %s", g.EvaluationInterval)
	}
	if err := g.ExternalLabels.Validate(func(l labels.Label) error {
		if !model.UTF8Validation.IsValidLabelName(l.Name) {
			return fmt.Errorf("external_labels: %q is not a valid label name", l.Name)
		}
		return nil
	}); err != nil {
		return err
	}
	return nil
}

// Validate checks the rules section.
func (r RulesConfig) Validate() error {
	if r.ForOutageTolerance < 0 || r.ForGracePeriod < 0 || r.ResendDelay < 0 {
		return errors.New("for_outage_tolerance, for_grace_period and resend_delay must not be negative")
	}
	return nil
}

// Validate checks the notifier section.
func (n NotifierConfig) Validate() error {
	if n.QueueCapacity <= 0 {
		return fmt.Errorf("queue_capacity must be positive, got %d", n.QueueCapacity)
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

// AlertingConfig is the part of the config that the rules manager and the
// notifier use, and that a reload can change.
func (c Config) AlertingConfig() alerting.Config {
	ext := c.ExternalURL()
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

// RemoteWriteSection is Prometheus's `remote_write:` list, decoded by
// Prometheus's own config types: url, remote_timeout, headers, name,
// write_relabel_configs, basic_auth, authorization, oauth2, tls_config,
// proxy_url, queue_config, protobuf_message, send_native_histograms, ...
type RemoteWriteSection []*promconfig.RemoteWriteConfig

// UnmarshalYAML decodes the list strictly and checks it as Prometheus does.
func (r *RemoteWriteSection) UnmarshalYAML(n *yaml.Node) error {
	var list []*promconfig.RemoteWriteConfig
	if err := decodePrometheusYAML(n, &list); err != nil {
		return err
	}
	names := map[string]bool{}
	for i, rw := range list {
		if rw == nil {
			return fmt.Errorf("remote_write[%d] is empty", i)
		}
		if u := (*url.URL)(rw.URL.URL); u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("remote_write[%d]: url %q: scheme must be http or https", i, u)
		}
		if err := rw.HTTPClientConfig.Validate(); err != nil {
			return fmt.Errorf("remote_write[%d]: %w", i, err)
		}
		if rw.Name != "" {
			if names[rw.Name] {
				return fmt.Errorf("remote_write[%d]: found multiple remote write configs with job name %q", i, rw.Name)
			}
			names[rw.Name] = true
		}
	}
	*r = list
	return nil
}

// ForwardConfig is what the forwarder applies (at start and on reload).
func (c Config) ForwardConfig() storage.ForwardConfig {
	return storage.ForwardConfig{RemoteWrite: c.RemoteWrite, RemoteRead: c.RemoteRead, ExternalLabels: c.Global.ExternalLabels}
}

// RemoteReadSection is Prometheus's `remote_read:` list (url, read_recent,
// required_matchers, filter_external_labels, remote_timeout, auth, tls).
type RemoteReadSection []*promconfig.RemoteReadConfig

// UnmarshalYAML decodes the list strictly.
func (r *RemoteReadSection) UnmarshalYAML(n *yaml.Node) error {
	var list []*promconfig.RemoteReadConfig
	if err := decodePrometheusYAML(n, &list); err != nil {
		return err
	}
	for i, rr := range list {
		if rr == nil {
			return fmt.Errorf("remote_read[%d] is empty", i)
		}
		if err := rr.HTTPClientConfig.Validate(); err != nil {
			return fmt.Errorf("remote_read[%d]: %w", i, err)
		}
	}
	*r = list
	return nil
}
