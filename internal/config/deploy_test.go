package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDeployConfig(t *testing.T) {
	tests := []struct {
		name, yaml string
		err        string // substring of the error; "" for valid
	}{
		{"defaults", ``, ""},
		{"full section", `
deploy:
  window: 10m
  step: 15s
  rate_window: 1m
  external_url: https://vigil.example.com
  policy:
    alpha: 0.005
    confidence: 2
    min_samples: 4
    min_requests: 100
    pass_score: 0.8
  signals:
    - name: checkout_queue_depth
      query: max(queue_depth{$selector})
      direction: higher_is_worse
      tolerance: 0.5
      max: 1000
      weight: 2
`, ""},
		{"bad policy", "deploy:\n  policy:\n    alpha: 2\n", "deploy.policy.alpha"},
		{"bad signal query", "deploy:\n  signals:\n    - name: x\n      query: 'sum('\n", "deploy.signals[0]: signal x"},
		{"bad direction", "deploy:\n  signals:\n    - name: x\n      query: up\n      direction: sideways\n", "direction"},
		{"unknown key", "deploy:\n  windw: 5m\n", "windw"},
		{"step too small", "deploy:\n  step: 100ms\n", "deploy.step"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "vigil.yml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadFile(p)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Deploy.Window <= 0 || cfg.Deploy.Step <= 0 {
					t.Errorf("deploy defaults lost: %+v", cfg.Deploy)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want one naming %q", err, tc.err)
			}
		})
	}
	p := filepath.Join(t.TempDir(), "vigil.yml")
	_ = os.WriteFile(p, []byte(tests[1].yaml), 0o644)
	cfg, err := LoadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Deploy.Signals[0]
	if time.Duration(cfg.Deploy.Window) != 10*time.Minute || s.Max == nil || *s.Max != 1000 || s.Weight != 2 || cfg.Deploy.Policy.MinRequests != 100 {
		t.Errorf("parsed %+v, signal %+v", cfg.Deploy, s)
	}
}
