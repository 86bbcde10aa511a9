package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"

	"github.com/vigilhq/vigil/internal/peers"
)

// webhookSink is the receiver Alertmanager notifies: it records every
// notification, as a pager or chat integration would see it.
type webhookSink struct {
	mu   sync.Mutex
	msgs []amWebhook
}

type amWebhook struct {
	Status string `json:"status"`
	Alerts []struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    time.Time         `json:"startsAt"`
		EndsAt      time.Time         `json:"endsAt"`
	} `json:"alerts"`
}

func (s *webhookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m amWebhook
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.mu.Unlock()
}

func (s *webhookSink) find(status, alertname string) *amWebhook {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.msgs {
		for _, a := range s.msgs[i].Alerts {
			if a.Status == status && a.Labels["alertname"] == alertname {
				return &s.msgs[i]
			}
		}
	}
	return nil
}

// amAlert is an alert as Alertmanager's v2 API lists it.
type amAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
	GeneratorURL string `json:"generatorURL"`
}

func amAlerts(t *testing.T, am string) []amAlert {
	t.Helper()
	resp, err := http.Get(am + "/api/v2/alerts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []amAlert
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func gauge(name string, value float64, ts time.Time, lbls ...string) prompb.TimeSeries {
	ls := []prompb.Label{{Name: "__name__", Value: name}}
	for i := 0; i+1 < len(lbls); i += 2 {
		ls = append(ls, prompb.Label{Name: lbls[i], Value: lbls[i+1]})
	}
	return prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Value: value, Timestamp: ts.UnixMilli()}}}
}

const checkoutRules = `groups:
  - name: checkout
    interval: 1s
    rules:
      - record: service:test_errors:sum
        expr: sum by (service) (test_errors)
      - alert: CheckoutErrors
        expr: service:test_errors:sum{service="checkout"} > 5
        labels:
          severity: page
        annotations:
          summary: '{{ $labels.service }} has {{ $value }} errors'
          runbook_url: https://runbooks.example.com/checkout
`

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAlertsReachAlertmanager: a rule file loaded by Vigil fires on data
// remote-written into it; Debian's Alertmanager lists the alert with its
// labels (external labels included) and annotations, notifies a webhook, and
// sees the alert resolve when the condition clears.
func TestAlertsReachAlertmanager(t *testing.T) {
	sink := &webhookSink{}
	hook := httptest.NewServer(sink)
	defer hook.Close()
	am := peers.StartAlertmanager(t, fmt.Sprintf(`route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: %s
        send_resolved: true
`, hook.URL))

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "checkout.rules.yml"), checkoutRules)
	writeFile(t, filepath.Join(dir, "vigil.yml"), fmt.Sprintf(`global:
  evaluation_interval: 1s
  external_labels:
    cluster: test-eu-1
rule_files:
  - "*.rules.yml"
rules:
  resend_delay: 1s
alerting:
  alertmanagers:
    - static_configs:
        - targets: [%q]
      timeout: 5s
`, am.Addr))
	v := peers.StartVigil(t, filepath.Join(dir, "data"), "--config.file", filepath.Join(dir, "vigil.yml"))

	now := time.Now()
	remoteWrite(t, v.URL(), &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		gauge("test_errors", 7, now, "service", "checkout", "pod", "a"),
		gauge("test_errors", 3, now, "service", "checkout", "pod", "b"),
		gauge("test_errors", 100, now, "service", "cart", "pod", "c"),
	}})

	var got amAlert
	eventually(t, 30*time.Second, "CheckoutErrors in Alertmanager", func() bool {
		for _, a := range amAlerts(t, am.URL()) {
			if a.Labels["alertname"] == "CheckoutErrors" {
				got = a
				return true
			}
		}
		return false
	})
	want := map[string]string{"alertname": "CheckoutErrors", "service": "checkout", "severity": "page", "cluster": "test-eu-1"}
	for k, val := range want {
		if got.Labels[k] != val {
			t.Errorf("alert label %s = %q, want %q (labels %v)", k, got.Labels[k], val, got.Labels)
		}
	}
	if len(got.Labels) != len(want) {
		t.Errorf("alert labels = %v, want exactly %v", got.Labels, want)
	}
	if got.Annotations["summary"] != "checkout has 10 errors" || got.Annotations["runbook_url"] != "https://runbooks.example.com/checkout" {
		t.Errorf("annotations = %v", got.Annotations)
	}
	if got.Status.State != "active" || !strings.HasPrefix(got.GeneratorURL, "http://"+v.Addr) {
		t.Errorf("state %q generatorURL %q", got.Status.State, got.GeneratorURL)
	}
	eventually(t, 20*time.Second, "firing notification at the webhook", func() bool { return sink.find("firing", "CheckoutErrors") != nil })

	// Vigil's own views agree: /api/v1/alerts, /api/v1/rules, ALERTS.
	_, r := apiGet(t, v.URL(), "/api/v1/alerts", nil)
	var alerts struct {
		Alerts []struct {
			Labels map[string]string `json:"labels"`
			State  string            `json:"state"`
			Value  string            `json:"value"`
		} `json:"alerts"`
	}
	if err := json.Unmarshal(r.Data, &alerts); err != nil {
		t.Fatal(err)
	}
	if len(alerts.Alerts) != 1 || alerts.Alerts[0].State != "firing" || alerts.Alerts[0].Value != "1e+01" {
		t.Errorf("/api/v1/alerts = %s", r.Data)
	}
	// ALERTS is written once the rule's state is restored (its second
	// evaluation), as in Prometheus.
	eventually(t, 10*time.Second, "ALERTS{alertstate=\"firing\"}", func() bool {
		d := instant(t, v.URL(), `ALERTS{alertname="CheckoutErrors",alertstate="firing",service="checkout",severity="page"}`, time.Now().Add(time.Second))
		return strings.Contains(string(d.Result), `"1"]`)
	})
	d := instant(t, v.URL(), `ALERTS_FOR_STATE{alertname="CheckoutErrors"}`, time.Now().Add(time.Second))
	if !strings.Contains(string(d.Result), `"service":"checkout"`) {
		t.Errorf("ALERTS_FOR_STATE = %s", d.Result)
	}
	d = instant(t, v.URL(), `service:test_errors:sum`, time.Now())
	if !contains(string(d.Result), `"service":"checkout"`, `"10"`, `"service":"cart"`, `"100"`) {
		t.Errorf("recording rule result = %s", d.Result)
	}

	// The condition clears: Alertmanager hears the alert resolved.
	remoteWrite(t, v.URL(), &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		gauge("test_errors", 0, time.Now(), "service", "checkout", "pod", "a"),
		gauge("test_errors", 0, time.Now(), "service", "checkout", "pod", "b"),
	}})
	eventually(t, 30*time.Second, "resolved notification at the webhook", func() bool { return sink.find("resolved", "CheckoutErrors") != nil })
	msg := sink.find("resolved", "CheckoutErrors")
	if a := msg.Alerts[0]; a.EndsAt.IsZero() || a.Labels["cluster"] != "test-eu-1" {
		t.Errorf("resolved notification = %+v", a)
	}
	eventually(t, 10*time.Second, "Alertmanager to stop listing the alert as active", func() bool {
		for _, a := range amAlerts(t, am.URL()) {
			if a.Labels["alertname"] == "CheckoutErrors" && a.Status.State == "active" {
				return false
			}
		}
		return true
	})
}

type rulesData struct {
	Groups []struct {
		Name  string `json:"name"`
		File  string `json:"file"`
		Rules []struct {
			Name   string `json:"name"`
			Type   string `json:"type"`
			Health string `json:"health"`
			State  string `json:"state"`
			Alerts []struct {
				ActiveAt time.Time `json:"activeAt"`
				State    string    `json:"state"`
			} `json:"alerts"`
		} `json:"rules"`
	} `json:"groups"`
}

func getRules(t *testing.T, base string) rulesData {
	t.Helper()
	code, r := apiGet(t, base, "/api/v1/rules", nil)
	if code != 200 {
		t.Fatalf("/api/v1/rules: %d %s", code, r.Error)
	}
	var d rulesData
	if err := json.Unmarshal(r.Data, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d rulesData) names() []string {
	var out []string
	for _, g := range d.Groups {
		for _, r := range g.Rules {
			out = append(out, g.Name+"/"+r.Name)
		}
	}
	return out
}

// pendingAlert is the activeAt of the one pending alert of rule name.
func (d rulesData) activeAt(name string) (time.Time, bool) {
	for _, g := range d.Groups {
		for _, r := range g.Rules {
			if r.Name == name && len(r.Alerts) == 1 {
				return r.Alerts[0].ActiveAt, true
			}
		}
	}
	return time.Time{}, false
}

const slowRules = `groups:
  - name: slow
    interval: 1s
    rules:
      - alert: CheckoutSlow
        expr: test_latency_seconds{service="checkout"} > 1
        for: 1h
`

// TestRuleReloadAndRestart: a bad rule file is rejected on reload with the
// file, line and problem while the old rules keep running; a good reload
// (SIGHUP) keeps a pending alert's state; a restart restores it from
// ALERTS_FOR_STATE; and a bad rule file stops `vigil serve` at start.
func TestRuleReloadAndRestart(t *testing.T) {
	dir := t.TempDir()
	rulesPath := filepath.Join(dir, "slow.rules.yml")
	writeFile(t, rulesPath, slowRules)
	cfgPath := filepath.Join(dir, "vigil.yml")
	writeFile(t, cfgPath, "global:\n  evaluation_interval: 1s\nrule_files: [slow.rules.yml]\nrules:\n  for_grace_period: 1s\n")
	data := filepath.Join(dir, "data")
	v := peers.StartVigil(t, data, "--config.file", cfgPath)

	remoteWrite(t, v.URL(), &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		gauge("test_latency_seconds", 2.5, time.Now(), "service", "checkout"),
	}})
	var activeAt time.Time
	eventually(t, 20*time.Second, "CheckoutSlow pending", func() bool {
		var ok bool
		activeAt, ok = getRules(t, v.URL()).activeAt("CheckoutSlow")
		return ok
	})

	// A broken file: the reload fails naming file and line, nothing changes.
	writeFile(t, rulesPath, slowRules+"      - alert: Broken\n        expr: sum(rate(x[5m])\n")
	resp, err := http.Post(v.URL()+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || !contains(string(body), rulesPath, "9:15", "unclosed left parenthesis") {
		t.Errorf("reload of a bad rule file: %d %s", resp.StatusCode, body)
	}
	if names := getRules(t, v.URL()).names(); strings.Join(names, ",") != "slow/CheckoutSlow" {
		t.Errorf("rules after a failed reload = %v, want the old ones", names)
	}
	if m := httpGetBody(t, v.URL()+"/metrics"); !strings.Contains(m, "vigil_config_last_reload_successful 0") {
		t.Error("vigil_config_last_reload_successful is not 0 after a failed reload")
	}

	// A good file with one more rule, reloaded by SIGHUP: the pending alert
	// keeps its activeAt.
	writeFile(t, rulesPath, slowRules+"      - record: checkout:latency:max\n        expr: max(test_latency_seconds)\n")
	if err := v.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the new rule after SIGHUP", func() bool {
		return strings.Join(getRules(t, v.URL()).names(), ",") == "slow/CheckoutSlow,slow/checkout:latency:max"
	})
	if at, ok := getRules(t, v.URL()).activeAt("CheckoutSlow"); !ok || !at.Equal(activeAt) {
		t.Errorf("activeAt after reload = %v (found %v), want %v", at, ok, activeAt)
	}
	if m := httpGetBody(t, v.URL()+"/metrics"); !strings.Contains(m, "vigil_config_last_reload_successful 1") {
		t.Error("vigil_config_last_reload_successful is not 1 after a good reload")
	}

	// Restart: the alert's `for` clock is restored from ALERTS_FOR_STATE,
	// not restarted at the time Vigil came back.
	time.Sleep(5 * time.Second) // pending long enough that a restored activeAt predates the restart
	if err := v.Stop(30 * time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	restartedAt := time.Now()
	v = peers.StartVigil(t, data, "--config.file", cfgPath)
	remoteWrite(t, v.URL(), &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		gauge("test_latency_seconds", 2.5, time.Now(), "service", "checkout"),
	}})
	// The first evaluation after a restart starts a new pending alert; the
	// second restores its activeAt from ALERTS_FOR_STATE, shifted by the
	// downtime (Prometheus's rule), so it predates the restart.
	var restored time.Time
	eventually(t, 20*time.Second, "CheckoutSlow's activeAt restored to before the restart", func() bool {
		restored, _ = getRules(t, v.URL()).activeAt("CheckoutSlow")
		return !restored.IsZero() && restored.Before(restartedAt)
	})
	if restored.Before(activeAt) {
		t.Errorf("restored activeAt %v is before the original %v", restored, activeAt)
	}

	// A bad rule file at start: serve exits 1 naming the file and line.
	writeFile(t, rulesPath, "groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: up ==\n")
	_, stderr, code := runVigil(t, "serve", "--config.file", cfgPath, "--storage.path", filepath.Join(dir, "data2"),
		"--listen", peers.FreeAddr(t), "--otlp.grpc.listen-address", "", "--otlp.http.listen-address", "")
	if code != 1 || !contains(stderr, rulesPath, "5:", "unexpected end of input") {
		t.Errorf("serve with a bad rule file: exit %d, stderr:\n%s", code, stderr)
	}
}

func httpGetBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
