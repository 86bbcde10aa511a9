package deploy

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(c *Config)
		err  string // "" : valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"window over max_window", func(c *Config) { c.Window = model.Duration(2 * time.Hour) }, "max_window (1h) must be at least window (2h)"},
		{"max_window beyond the points limit", func(c *Config) { c.MaxWindow = model.Duration(24 * time.Hour) }, "exceeds the 11000 points"},
		{"max_window at the points limit", func(c *Config) { c.MaxWindow = model.Duration(22 * time.Hour); c.Retention = c.MaxWindow }, ""},
		{"no evaluation error allowed", func(c *Config) { c.MaxEvaluationErrors = 0 }, "max_evaluation_errors"},
		{"negative cool-down", func(c *Config) { c.RollbackCooldown = -1 }, "rollback_cooldown"},
		{"no cool-down", func(c *Config) { c.RollbackCooldown = 0 }, ""},
		{"retention under max_window", func(c *Config) { c.Retention = model.Duration(time.Minute) }, "retention"},
		{"no deployments kept", func(c *Config) { c.MaxDeployments = 0 }, "max_deployments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("Validate() = %v, want %q", err, tc.err)
			}
		})
	}
}
