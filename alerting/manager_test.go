package alerting

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/query"
	"github.com/vigilhq/vigil/storage"
)

const testRules = `groups:
  - name: shop
    interval: 100ms
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: JobDown
        expr: up == 0
        labels: {severity: page}
        annotations: {summary: "{{ $labels.job }} is down"}
  - name: other
    interval: 100ms
    rules:
      - record: all:up:count
        expr: count(up)
`

// setup runs a manager with testRules over a real TSDB holding
// up{job="api"}=1 and up{job="db"}=0, and serves its API.
func setup(t *testing.T) *httptest.Server {
	t.Helper()
	dir := t.TempDir()
	scfg := storage.DefaultConfig()
	scfg.Path = filepath.Join(dir, "data")
	store, err := storage.Open(scfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	app := store.AppenderV2(context.Background())
	now := time.Now().UnixMilli()
	for job, v := range map[string]float64{"api": 1, "db": 0} {
		if _, err := app.Append(0, labels.FromStrings("__name__", "up", "job", job), 0, now, v, nil, nil, promstorage.AOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	engine, err := query.NewEngine(query.DefaultConfig(), "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rf := filepath.Join(dir, "shop.rules.yml")
	if err := os.WriteFile(rf, []byte(testRules), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{RuleFiles: []string{filepath.Join(dir, "*.rules.yml")}, EvaluationInterval: time.Second},
		Options{Engine: engine, Queryable: store, Appendable: store})
	if err != nil {
		t.Fatal(err)
	}
	m.Start()
	t.Cleanup(m.Stop)
	mux := auth.NewMux(nil, nil)
	m.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	// Wait until the alert has fired and every rule has been evaluated.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(get(t, srv.URL+"/api/v1/alerts", nil), `"firing"`) &&
			!strings.Contains(get(t, srv.URL+"/api/v1/rules", nil), `"health":"unknown"`) {
			return srv
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("JobDown never fired")
	return nil
}

func get(t *testing.T, u string, q url.Values) string {
	t.Helper()
	resp, err := http.Get(u + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRulesAPIFilters: /api/v1/rules answers Prometheus's filters.
func TestRulesAPIFilters(t *testing.T) {
	srv := setup(t)
	tests := []struct {
		name   string
		params url.Values
		want   []string // group/rule names, in order
		alerts bool     // whether alerting rules list their alerts
	}{
		{"all", nil, []string{"other/all:up:count", "shop/job:up:sum", "shop/JobDown"}, true},
		{"type=record", url.Values{"type": {"record"}}, []string{"other/all:up:count", "shop/job:up:sum"}, false},
		{"type=alert", url.Values{"type": {"alert"}}, []string{"shop/JobDown"}, true},
		{"rule_group[]", url.Values{"rule_group[]": {"other"}}, []string{"other/all:up:count"}, false},
		{"rule_name[]", url.Values{"rule_name[]": {"JobDown", "all:up:count"}}, []string{"other/all:up:count", "shop/JobDown"}, true},
		{"match[] on rule labels", url.Values{"match[]": {`{severity="page"}`}}, []string{"shop/JobDown"}, true},
		{"exclude_alerts", url.Values{"type": {"alert"}, "exclude_alerts": {"true"}}, []string{"shop/JobDown"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var env struct {
				Status string `json:"status"`
				Data   struct {
					Groups []struct {
						Name  string `json:"name"`
						Rules []struct {
							Name   string            `json:"name"`
							Type   string            `json:"type"`
							Health string            `json:"health"`
							Alerts []json.RawMessage `json:"alerts"`
						} `json:"rules"`
					} `json:"groups"`
				} `json:"data"`
			}
			body := get(t, srv.URL+"/api/v1/rules", tc.params)
			if err := json.Unmarshal([]byte(body), &env); err != nil || env.Status != "success" {
				t.Fatalf("%v: %s", err, body)
			}
			var got []string
			sawAlerts := false
			for _, g := range env.Data.Groups {
				for _, r := range g.Rules {
					got = append(got, g.Name+"/"+r.Name)
					if r.Health != "ok" {
						t.Errorf("%s health %q", r.Name, r.Health)
					}
					if r.Type == "alerting" && len(r.Alerts) > 0 {
						sawAlerts = true
					}
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("rules = %v, want %v", got, tc.want)
			}
			if sawAlerts != tc.alerts {
				t.Errorf("alerts listed = %v, want %v", sawAlerts, tc.alerts)
			}
		})
	}
	if body := get(t, srv.URL+"/api/v1/rules", url.Values{"type": {"bogus"}}); !strings.Contains(body, `"errorType":"bad_data"`) {
		t.Errorf("type=bogus: %s", body)
	}
}

// TestAlertsAPI: /api/v1/alerts lists the firing alert as Prometheus does.
func TestAlertsAPI(t *testing.T) {
	srv := setup(t)
	body := get(t, srv.URL+"/api/v1/alerts", nil)
	for _, want := range []string{`"alertname":"JobDown"`, `"job":"db"`, `"summary":"db is down"`, `"state":"firing"`, `"value":"0e+00"`, `"activeAt":"`} {
		if !strings.Contains(body, want) {
			t.Errorf("/api/v1/alerts lacks %s: %s", want, body)
		}
	}
	if strings.Contains(body, `"job":"api"`) {
		t.Errorf("the healthy job alerts: %s", body)
	}
}

// TestCheckRuleFiles: a bad file is named with its line and problem.
func TestCheckRuleFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yml")
	bad := filepath.Join(dir, "bad.yml")
	_ = os.WriteFile(good, []byte(testRules), 0o644)
	_ = os.WriteFile(bad, []byte("groups:\n  - name: x\n    rules:\n      - record: a\n        expr: rate(x[5m]\n"), 0o644)
	if files, err := CheckRuleFiles([]string{good}); err != nil || len(files) != 1 {
		t.Errorf("good file: %v %v", files, err)
	}
	_, err := CheckRuleFiles([]string{filepath.Join(dir, "*.yml")})
	if err == nil || !strings.Contains(err.Error(), bad+": 5:15") || strings.Count(err.Error(), bad) != 1 {
		t.Errorf("bad file error = %v", err)
	}
}
