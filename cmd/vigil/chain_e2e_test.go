package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/internal/peers"
)

// TestCatalogRulesAlertVerdictChain follows one service through the whole
// chain, with the real binary and real OTLP traffic: the catalog → `vigil
// gen rules` → the rules loaded by `vigil serve` → the deploy-health alert
// firing on the bad version's telemetry → the verdict's critical_alerts
// signal failing (the alert carries the catalog's namespace) → the
// automatic rollback. The bad version serves too few requests for the
// statistics to decide (min_requests): only the alert can. A second catalog
// service names a namespace its telemetry does not carry: serve logs it,
// and `vigil check config --server` says so.
func TestCatalogRulesAlertVerdictChain(t *testing.T) {
	hook := newRollbackListener(t)
	dir := t.TempDir()
	authSection, tokens := tokenFiles(t, dir)
	cat := filepath.Join(dir, "catalog.yml")
	writeFile(t, cat, fmt.Sprintf(`
defaults: {environment: production}
services:
  - name: ledger
    namespace: shop
    rollback: {automatic: true, webhook: {url: %q}}
  - name: orders
    namespace: warehouse
`, hook.URL))
	rules := filepath.Join(dir, "rules")
	if out, errOut, code := runVigil(t, "gen", "rules", "--catalog.file", cat, "--output-dir", rules, "--deploy-alerts.for", "4s"); code != 0 {
		t.Fatalf("vigil gen rules: exit %d\n%s%s", code, out, errOut)
	}
	cfg := filepath.Join(dir, "vigil.yml")
	writeFile(t, cfg, authSection+fmt.Sprintf(`
global: {evaluation_interval: 1s}
rule_files: [%s]
span_metrics: {flush_interval: 1s}
log_metrics: {flush_interval: 1s}
deploy:
  catalog: %s
  step: 2s
  rate_window: 4s
  window: 3m
  series_interval: 1s
`, filepath.Join(rules, "ledger.rules.yml"), cat))
	if out, errOut, code := runVigil(t, "check", "config", cfg); code != 0 || !strings.Contains(out, "SUCCESS") {
		t.Fatalf("vigil check config: exit %d\n%s%s", code, out, errOut)
	}
	v := peers.StartVigil(t, filepath.Join(dir, "data"), "--config.file", cfg)
	base := v.URL()
	deployEnv := []string{"VIGIL_SERVER=" + base, "VIGIL_BEARER_TOKEN_FILE=" + filepath.Join(dir, "ci.token")}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	send := func(s simService) {
		s.Token = tokens[auth.ScopeWrite]
		wg.Go(func() {
			if err := s.run(ctx, v.OTLPHTTP); err != nil {
				t.Error(err)
			}
		})
	}
	send(simService{Service: "ledger", Version: "v1", RPS: 20, ErrorRatio: 0.01, Latency: 20 * time.Millisecond, ErrorMessage: "conflict", Seed: 31})
	send(simService{Service: "orders", Version: "v1", RPS: 5, ErrorRatio: 0.01, Latency: 20 * time.Millisecond, ErrorMessage: "conflict", Seed: 32})
	time.Sleep(8 * time.Second)

	out, errOut, code := runVigilEnv(t, deployEnv, "deploy", "record", "--service", "ledger", "--version", "v2", "--previous-version", "v1",
		"--environment", "production", "--namespace", "shop")
	if code != 0 {
		t.Fatalf("deploy record: exit %d\n%s%s", code, out, errOut)
	}
	// Few requests, most of them failing: the alert fires long before the
	// 200 requests the statistics need.
	send(simService{Service: "ledger", Version: "v2", RPS: 2, ErrorRatio: 0.6, Latency: 20 * time.Millisecond, ErrorMessage: "ledger corrupted", Seed: 33})

	out, errOut, code = runVigilEnv(t, deployEnv, "verify", "--service", "ledger", "--version", "v2", "--poll-interval", "2s", "--wait", "2m", "-o", "json")
	if code != verifyRollback {
		t.Fatalf("vigil verify: exit %d, want %d (rollback)\n%s%s", code, verifyRollback, out, errOut)
	}
	var vd verdict.Verdict
	if err := json.Unmarshal([]byte(out), &vd); err != nil {
		t.Fatalf("verify -o json: %v\n%s", err, out)
	}
	if !strings.HasPrefix(vd.Reason, "critical:") || !strings.Contains(vd.Reason, "critical_alerts") {
		t.Errorf("the verdict was not decided by the alert: %s", vd.Reason)
	}
	for _, s := range vd.Signals {
		switch {
		case s.Name == "critical_alerts" && s.Status != verdict.StatusFail:
			t.Errorf("critical_alerts is %s, want fail", s.Status)
		case s.Name == "critical_alerts" && !strings.Contains(s.Query, `namespace="shop"`):
			t.Errorf("critical_alerts selects %s, without the catalog's namespace", s.Query)
		case s.Name == "error_ratio" && (s.Counts == nil || s.Counts[0].Total >= verdict.DefaultPolicy().MinRequests):
			t.Errorf("error_ratio counted %v: with min_requests reached the statistics could have decided, not only the alert", s.Counts)
		}
	}
	// The alert that decided carries the namespace the verdict selects by.
	code, r := apiGetToken(t, base, "/api/v1/query", tokens[auth.ScopeRead], url.Values{"query": {`ALERTS{alertname="VigilDeployErrorRatioRegression",alertstate="firing"}`}})
	if code != 200 || !contains(string(r.Data), `"namespace":"shop"`, `"service":"ledger"`, `"version":"v2"`, `"previous_version":"v1"`) {
		t.Errorf("ALERTS: %d %s", code, r.Data)
	}
	// The action: the catalog's webhook, once.
	eventually(t, 30*time.Second, "the rollback webhook", func() bool { return len(hook.Calls()) > 0 })
	if calls := hook.Calls(); len(calls) != 1 || !contains(calls[0], `"service":"ledger"`, `"critical_alerts"`, `"rollbackTo":"v1"`) {
		t.Errorf("rollback webhook calls: %q", calls)
	}

	// orders: namespace warehouse in the catalog, shop in its telemetry.
	eventually(t, 30*time.Second, "the warning about the orders selector in the log", func() bool {
		return strings.Contains(v.Logs(), "A catalog selector matches no span metrics of its service") && strings.Contains(v.Logs(), "service=orders")
	})
	if strings.Contains(v.Logs(), "matches no span metrics of its service\" component=deploy service=ledger") {
		t.Error("a warning about ledger, whose selector matches")
	}
	out, errOut, code = runVigilEnv(t, []string{"VIGIL_BEARER_TOKEN_FILE=" + filepath.Join(dir, "grafana.token")}, "check", "config", "--server", base, cfg)
	if code != 0 || !contains(out, "WARNING: catalog service orders (production)", `namespace="warehouse"`, `{environment="production", namespace="shop"}`) || strings.Contains(out, "catalog service ledger") {
		t.Errorf("check config --server: exit %d\n%s%s", code, out, errOut)
	}
	cancel()
	wg.Wait()
}

// apiGetToken is apiGet with a bearer token.
func apiGetToken(t *testing.T, base, path, token string, params url.Values) (int, apiResponse) {
	t.Helper()
	code, _, body := httpDo(t, http.DefaultClient, "GET", base+path+"?"+params.Encode(), token, "")
	var r apiResponse
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("GET %s: %d, body is not JSON: %v\n%s", path, code, err, body)
	}
	return code, r
}
