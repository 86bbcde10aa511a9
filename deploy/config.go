package deploy

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/common/model"

	"github.com/vigilhq/vigil/deploy/verdict"
)

// Config is the deploy: section of vigil.yml.
type Config struct {
	// Catalog is the service catalog file (SLO bounds, rollback actions). Optional.
	Catalog string `yaml:"catalog"`
	// Window is the default analysis window of a verification.
	Window model.Duration `yaml:"window"`
	// Step is the resolution of the samples compared.
	Step model.Duration `yaml:"step"`
	// RateWindow is the range of the rate() in signal queries ($rate).
	RateWindow model.Duration `yaml:"rate_window"`
	// Policy holds the decision thresholds.
	Policy verdict.Policy `yaml:"policy"`
	// Signals are custom signals judged in addition to the default ones.
	Signals []verdict.Signal `yaml:"signals"`
	// ExternalURL is how users reach Vigil, for the PromQL links in verdicts.
	ExternalURL string `yaml:"external_url"`
	// BearerTokenFile is no longer supported: scoped tokens (auth.tokens)
	// replace it. The key is kept only to say so when it is set.
	BearerTokenFile string `yaml:"bearer_token_file,omitempty"`
	// GitHubSecretFile holds the secret of the GitHub webhook: when set,
	// GitHub events must carry a valid X-Hub-Signature-256.
	GitHubSecretFile string `yaml:"github_secret_file"`
	// Kubernetes configures the Kubernetes Deployment rollback action.
	Kubernetes KubernetesConfig `yaml:"kubernetes"`
	// SeriesInterval is how often the deployment and verdict series are re-written.
	SeriesInterval model.Duration `yaml:"series_interval"`
	// MaxBodyBytes bounds an event or request body.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
}

// DefaultConfig is what `vigil serve` runs with.
func DefaultConfig() Config {
	return Config{
		Window:         model.Duration(10 * time.Minute),
		Step:           model.Duration(15 * time.Second),
		RateWindow:     model.Duration(time.Minute),
		Policy:         verdict.DefaultPolicy(),
		SeriesInterval: model.Duration(15 * time.Second),
		MaxBodyBytes:   1 << 20,
	}
}

// Validate names the first bad key.
func (c Config) Validate() error {
	switch {
	case c.Window <= 0:
		return fmt.Errorf("window must be positive, got %s", c.Window)
	case c.Step < model.Duration(time.Second):
		return fmt.Errorf("step must be at least 1s, got %s", c.Step)
	case c.RateWindow < c.Step:
		return fmt.Errorf("rate_window (%s) must be at least step (%s)", c.RateWindow, c.Step)
	case c.SeriesInterval <= 0:
		return fmt.Errorf("series_interval must be positive, got %s", c.SeriesInterval)
	case c.MaxBodyBytes <= 0:
		return errors.New("max_body_bytes must be positive")
	case c.BearerTokenFile != "":
		return fmt.Errorf("bearer_token_file is no longer supported: scoped tokens replace it. Give manual rollbacks an admin token and CI a deploy token:\n"+
			"  auth:\n    tokens:\n      - {name: ops, token_file: %s, scopes: [admin]}\n      - {name: ci, token_file: /etc/vigil/ci.token, scopes: [deploy]}\n"+
			"(see docs/security.md)", c.BearerTokenFile)
	}
	if err := c.Kubernetes.Validate(); err != nil {
		return fmt.Errorf("kubernetes.%w", err)
	}
	if err := c.Policy.Validate(); err != nil {
		return fmt.Errorf("policy.%w", err)
	}
	for i, s := range c.Signals {
		if err := s.Validate(); err != nil {
			return fmt.Errorf("signals[%d]: %w", i, err)
		}
	}
	return nil
}
