package deploy

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/common/model"

	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/query"
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
	// MaxWindow is the longest analysis window a verify request may ask for.
	MaxWindow model.Duration `yaml:"max_window"`
	// AllowRequestSignals lets verify requests of callers with the deploy
	// scope bring critical signals and absolute bounds (max, min); without
	// it those come only from signals above and the catalog. A request's
	// other signals are judged, but a verdict that relies on them is never
	// acted on automatically unless this is set.
	AllowRequestSignals bool `yaml:"allow_request_signals"`
	// MaxEvaluationErrors is how many evaluations of a verification may
	// fail in a row before it ends with a final "error" verdict.
	MaxEvaluationErrors int `yaml:"max_evaluation_errors"`
	// RollbackCooldown is the least time between two rollback actions of
	// a service (and environment); one inside it is refused and recorded.
	RollbackCooldown model.Duration `yaml:"rollback_cooldown"`
	// Retention is how long deployments and verdicts are kept (the
	// current deployment of each service and environment is kept however old).
	Retention model.Duration `yaml:"retention"`
	// MaxDeployments is the most deployments (and final verdicts) kept.
	MaxDeployments int `yaml:"max_deployments"`
	// Watch is how long the new version is watched after a promotion,
	// compared with the previous version's history (0: no watch). A
	// regression found is a new rollback verdict on the deployment, acted on
	// only where the catalog says rollback.mode: enforce and
	// rollback.after_promotion: true.
	Watch model.Duration `yaml:"watch"`
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

		MaxWindow:           model.Duration(time.Hour),
		MaxEvaluationErrors: 5,
		RollbackCooldown:    model.Duration(10 * time.Minute),
		Retention:           model.Duration(30 * 24 * time.Hour),
		MaxDeployments:      10000,
		Watch:               model.Duration(30 * time.Minute),
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
	case c.MaxWindow < c.Window:
		return fmt.Errorf("max_window (%s) must be at least window (%s)", c.MaxWindow, c.Window)
	case 2*time.Duration(c.MaxWindow)/time.Duration(c.Step) > query.MaxPointsPerSeries:
		// A verification's baseline queries span two windows.
		return fmt.Errorf("max_window (%s) over step (%s) exceeds the %d points a query may return per series over two windows: raise step or lower max_window",
			c.MaxWindow, c.Step, query.MaxPointsPerSeries)
	case c.MaxEvaluationErrors < 1:
		return fmt.Errorf("max_evaluation_errors must be at least 1, got %d", c.MaxEvaluationErrors)
	case c.RollbackCooldown < 0:
		return fmt.Errorf("rollback_cooldown must not be negative, got %s", c.RollbackCooldown)
	case c.Retention < c.MaxWindow:
		return fmt.Errorf("retention (%s) must be at least max_window (%s)", c.Retention, c.MaxWindow)
	case c.MaxDeployments < 1:
		return fmt.Errorf("max_deployments must be at least 1, got %d", c.MaxDeployments)
	case c.Watch < 0:
		return fmt.Errorf("watch must not be negative, got %s", c.Watch)
	case time.Duration(c.Watch)/time.Duration(c.Step) > query.MaxPointsPerSeries:
		return fmt.Errorf("watch (%s) over step (%s) exceeds the %d points a query may return per series: raise step or shorten the watch",
			c.Watch, c.Step, query.MaxPointsPerSeries)
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
