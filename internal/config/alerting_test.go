package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAlertingConfig: the global, rule_files, rules, alerting and notifier
// keys load as Prometheus's would, and mistakes name the key and line.
func TestAlertingConfig(t *testing.T) {
	tests := []struct {
		name, yaml string
		wantErr    string
		check      func(t *testing.T, c Config)
	}{
		{
			name: "prometheus alerting block",
			yaml: `global:
  evaluation_interval: 30s
  external_labels: {cluster: eu-1}
rule_files: [rules/*.yml, /abs/x.yml]
alerting:
  alert_relabel_configs:
    - action: labeldrop
      regex: replica
  alertmanagers:
    - static_configs:
        - targets: [am-0:9093, am-1:9093]
      scheme: https
      path_prefix: /am
      timeout: 5s
      basic_auth: {username: vigil, password: hunter2}
`,
			check: func(t *testing.T, c Config) {
				if time.Duration(c.Global.EvaluationInterval) != 30*time.Second || c.Global.ExternalLabels.Get("cluster") != "eu-1" {
					t.Errorf("global = %+v", c.Global)
				}
				if len(c.RuleFiles) != 2 || !strings.HasSuffix(c.RuleFiles[0], filepath.Join("cfgdir", "rules", "*.yml")) || c.RuleFiles[1] != "/abs/x.yml" {
					t.Errorf("rule_files = %v, want relative paths resolved against the config file's directory", c.RuleFiles)
				}
				ams := c.Alerting.AlertmanagerConfigs
				if len(ams) != 1 || ams[0].Scheme != "https" || ams[0].PathPrefix != "/am" || time.Duration(ams[0].Timeout) != 5*time.Second ||
					ams[0].HTTPClientConfig.BasicAuth == nil || string(ams[0].HTTPClientConfig.BasicAuth.Password) != "hunter2" {
					t.Errorf("alertmanagers = %+v", ams)
				}
				if len(c.Alerting.AlertRelabelConfigs) != 1 {
					t.Errorf("alert_relabel_configs = %v", c.Alerting.AlertRelabelConfigs)
				}
				if s := c.String(); strings.Contains(s, "hunter2") {
					t.Errorf("the rendered config shows the password:\n%s", s)
				}
			},
		},
		{
			name: "defaults",
			yaml: "web:\n  external_url: https://vigil.example.com/\n",
			check: func(t *testing.T, c Config) {
				if time.Duration(c.Global.EvaluationInterval) != 15*time.Second || c.Notifier.QueueCapacity != 10000 ||
					time.Duration(c.Rules.ForGracePeriod) != 10*time.Minute || !c.Web.EnableLifecycle {
					t.Errorf("defaults = %+v %+v %+v", c.Global, c.Rules, c.Notifier)
				}
				if got := c.AlertingConfig().ExternalURL; got != "https://vigil.example.com/" {
					t.Errorf("external URL = %q", got)
				}
			},
		},
		{name: "unknown alerting key", yaml: "alerting:\n  alertmanagers:\n    - static_config: []\n", wantErr: `line 3: unknown key "static_config"`},
		{name: "bad duration", yaml: "alerting:\n  alertmanagers:\n    - timeout: 5x\n", wantErr: `unknown unit "x"`},
		{name: "bad scheme", yaml: "alerting:\n  alertmanagers:\n    - scheme: ftp\n", wantErr: `alerting.alertmanagers[0]: scheme "ftp"`},
		{name: "unsupported discovery", yaml: "alerting:\n  alertmanagers:\n    - kubernetes_sd_configs: [{role: pod}]\n", wantErr: `unknown key "kubernetes_sd_configs"`},
		{name: "bad external label", yaml: "global:\n  external_labels: {\"\": x}\n", wantErr: "external_labels"},
		{name: "zero interval", yaml: "global:\n  evaluation_interval: 0s\n", wantErr: "global.evaluation_interval must be positive"},
		{name: "queue", yaml: "notifier:\n  queue_capacity: 0\n", wantErr: "notifier.queue_capacity must be positive"},
		{name: "external url", yaml: "web:\n  external_url: vigil\n", wantErr: "web.external_url"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "cfgdir")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "vigil.yml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := LoadFile(p)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}
