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

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/prompb"

	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/internal/peers"
	"github.com/vigilhq/vigil/internal/semconv"
)

// remoteWriteErr sends one remote_write 1.0 request with client_golang's
// sender and a bearer token, and returns its error: nil for a 2xx,
// "server returned HTTP status 400 Bad Request: <body>" for a refusal.
func remoteWriteErr(base, token string, series []prompb.TimeSeries) error {
	hc := &http.Client{Transport: bearer{token: token, next: http.DefaultTransport}}
	api, err := remoteapi.NewAPI(base, remoteapi.WithAPIPath("/api/v1/write"), remoteapi.WithAPIHTTPClient(hc), remoteapi.WithAPINoRetryOnRateLimit(),
		remoteapi.WithAPIBackoff(remoteapi.BackoffConfig{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond, MaxRetries: 2}))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = api.Write(ctx, remoteapi.WriteV1MessageType, &prompb.WriteRequest{Timeseries: series})
	return err
}

// forgery is one series an attacker with a write token remote-writes to
// roll checkout v2 back; value gives its sample in each round.
type forgery struct {
	name   string
	metric string
	labels []string // besides __name__ and the attacker's job label
	value  func(round int, at time.Time) float64
	// refused: Vigil must answer 400 naming derived_series and the metric.
	refused bool
}

// TestForgedDerivedSeriesCannotRollBack plays the attacker of issue 14:
// someone holding a valid write token (any workload has one) forges, over
// remote_write, the series the verdict trusts — v2's span metrics with
// errors, its error logs, a firing critical alert for the service and its
// ALERTS_FOR_STATE, and the deploy-health series the catalog's generated
// rules record and fire their critical alerts from — while a healthy v2 of
// checkout, whose catalog entry rolls back automatically (rollback.mode:
// enforce) through a webhook, is verified by the pipeline with its deploy
// token. Every forged request is
// refused with 400 naming derived_series and counted; an ordinary series
// of the same token is stored (the token works); the verdict is promote,
// the webhook is never called, and the read API shows none of the forged
// series. Without the refusal each forgery, alone, would fail v2.
func TestForgedDerivedSeriesCannotRollBack(t *testing.T) {
	hook := newRollbackListener(t)
	dir := t.TempDir()
	authSection, tokens := tokenFiles(t, dir)
	cat := filepath.Join(dir, "catalog.yml")
	writeFile(t, cat, fmt.Sprintf(`
defaults: {environment: production}
services:
  - name: checkout
    namespace: shop
    rollback: {mode: enforce, webhook: {url: %q}}
`, hook.URL))
	// The catalog's generated rules run in Vigil, as `vigil gen rules`
	// writes them: their deploy-health alerts are critical, so they feed
	// the verdict's critical_alerts signal too.
	rules := filepath.Join(dir, "rules")
	if out, errOut, code := runVigil(t, "gen", "rules", "--catalog.file", cat, "--output-dir", rules, "--deploy-alerts.for", "3s"); code != 0 {
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
  step: 1s
  rate_window: 2s
  window: 20s
  watch: 0s
`, filepath.Join(rules, "checkout.rules.yml"), cat))
	v := peers.StartVigil(t, filepath.Join(dir, "data"), "--config.file", cfg)
	base := v.URL()
	ciEnv := []string{"VIGIL_SERVER=" + base, "VIGIL_BEARER_TOKEN_FILE=" + filepath.Join(dir, "ci.token")}

	// Honest traffic, as real OTLP spans and logs: v2 fails less than v1
	// (so that the generated error-ratio alert cannot fire on the noise of
	// v2's first few requests).
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
	send(simService{Service: "checkout", Version: "v1", RPS: 40, ErrorRatio: 0.02, Latency: 30 * time.Millisecond, ErrorMessage: "card declined", Seed: 41})
	time.Sleep(8 * time.Second)
	if out, errOut, code := runVigilEnv(t, ciEnv, "deploy", "record", "--service", "checkout", "--version", "v2", "--previous-version", "v1",
		"--environment", "production", "--namespace", "shop"); code != 0 {
		t.Fatalf("deploy record: exit %d\n%s%s", code, out, errOut)
	}
	send(simService{Service: "checkout", Version: "v2", RPS: 40, ErrorRatio: 0.005, Latency: 30 * time.Millisecond, ErrorMessage: "card declined", Seed: 42})

	// The attacker: a write token, and the labels of checkout v2. Counters
	// grow by 50 a second, more than v2's requests, so that each forgery
	// alone would fail v2 if it were stored.
	svc := []string{"service", "checkout", "namespace", "shop", "environment", "production"}
	v2 := append(append([]string{}, svc...), "version", "v2")
	counter := func(round int, _ time.Time) float64 { return float64(50 * (round + 1)) }
	forgeries := []forgery{
		{"span errors of v2", semconv.SpanCalls,
			append(append([]string{}, v2...), "span_name", "POST /orders", "span_kind", semconv.KindServer, "status_code", semconv.StatusError), counter, true},
		{"error logs of v2", semconv.LogRecords, append(append([]string{}, v2...), "severity", semconv.SeverityError), counter, true},
		{"a firing critical alert", "ALERTS",
			append(append([]string{}, svc...), "alertname", "CheckoutDown", "alertstate", "firing", "severity", "critical"),
			func(int, time.Time) float64 { return 1 }, true},
		{"the alert's for state", "ALERTS_FOR_STATE",
			append(append([]string{}, svc...), "alertname", "CheckoutDown", "severity", "critical"),
			func(_ int, at time.Time) float64 { return float64(at.Unix() - 60) }, true},
		// What the generated rules record, from which their critical
		// deploy-health alerts fire.
		{"the recorded error ratio of v2", semconv.DeployErrorRatio, []string{"service", "checkout", "environment", "production", "version", "v2"},
			func(int, time.Time) float64 { return 0.9 }, true},
		{"the recorded p99 latency of v2", semconv.DeployLatencyP99, []string{"service", "checkout", "environment", "production", "version", "v2"},
			func(int, time.Time) float64 { return 5 }, true},
		// The control: the same token writes an ordinary series.
		{"an ordinary series", "checkout_orders_total", append([]string{}, svc...), counter, false},
	}
	type outcome struct {
		refused, sent int
		unexpected    []string
	}
	outcomes := make([]outcome, len(forgeries))
	attack := func(round int) {
		at := time.Now()
		for i, f := range forgeries {
			ls := []prompb.Label{{Name: "__name__", Value: f.metric}, {Name: "job", Value: "forger"}}
			for j := 0; j < len(f.labels); j += 2 {
				ls = append(ls, prompb.Label{Name: f.labels[j], Value: f.labels[j+1]})
			}
			err := remoteWriteErr(base, tokens[auth.ScopeWrite], []prompb.TimeSeries{{Labels: ls, Samples: []prompb.Sample{{Value: f.value(round, at), Timestamp: at.UnixMilli()}}}})
			o := &outcomes[i]
			o.sent++
			switch {
			case f.refused && err != nil && contains(err.Error(), "400", "derived_series: 1", f.metric, `"agents" may not write it`):
				o.refused++
			case !f.refused && err == nil:
			default:
				o.unexpected = append(o.unexpected, fmt.Sprint(err))
			}
		}
	}
	attackDone := make(chan struct{})
	go func() {
		defer close(attackDone)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for round := 0; ; round++ {
			attack(round)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()

	// The pipeline verifies v2 with its deploy token while the attack runs.
	out, errOut, code := runVigilEnv(t, ciEnv, "verify", "--service", "checkout", "--version", "v2", "--poll-interval", "1s", "--wait", "60s", "-o", "json")
	cancel()
	<-attackDone
	wg.Wait()

	for i, f := range forgeries {
		o := outcomes[i]
		switch {
		case len(o.unexpected) > 0:
			t.Errorf("%s (%s): %d of %d answers unexpected, first: %s", f.name, f.metric, len(o.unexpected), o.sent, o.unexpected[0])
		case o.sent < 5:
			t.Errorf("%s: only %d requests sent during the verification", f.name, o.sent)
		}
	}
	var vd verdict.Verdict
	if err := json.Unmarshal([]byte(out), &vd); err != nil {
		t.Fatalf("vigil verify: exit %d, -o json: %v\n%s%s", code, err, out, errOut)
	}
	if code != verifyPromote || vd.Decision != verdict.Promote {
		t.Errorf("vigil verify checkout v2: exit %d, %s (%s), want promote\n%s", code, vd.Decision, vd.Reason, errOut)
	}
	for _, s := range vd.Signals {
		if s.Status == verdict.StatusFail {
			t.Errorf("signal %s fails: %s", s.Name, s.Reason)
		}
		if s.Name == "error_ratio" && (s.Counts == nil || s.Counts[0].Bad > 0.05*s.Counts[0].Total) {
			t.Errorf("error_ratio counted %+v for v2, more errors than the honest 0.5%%", s.Counts)
		}
	}
	if calls := hook.Calls(); len(calls) != 0 {
		t.Errorf("the rollback webhook was called %d times: %q", len(calls), calls)
	}

	// The read API: of the attacker's series only the ordinary one, and
	// v2's error spans are the honest ones.
	read := tokens[auth.ScopeRead]
	vector := func(q string) []map[string]string {
		t.Helper()
		code, r := apiGetToken(t, base, "/api/v1/query", read, url.Values{"query": {q}})
		var d struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
			} `json:"result"`
		}
		if err := json.Unmarshal(r.Data, &d); code != 200 || err != nil {
			t.Fatalf("query %s: %d %v %s", q, code, err, r.Error)
		}
		var ms []map[string]string
		for _, s := range d.Result {
			ms = append(ms, s.Metric)
		}
		return ms
	}
	if got := vector(`{job="forger"}`); len(got) != 1 || got[0]["__name__"] != "checkout_orders_total" {
		t.Errorf(`the attacker's series stored: %v, want checkout_orders_total only`, got)
	}
	for _, m := range vector(fmt.Sprintf(`%s{service="checkout",version="v2",status_code=%q}`, semconv.SpanCalls, semconv.StatusError)) {
		if m["job"] != "" || m["span_name"] != "POST /orders" || m["namespace"] != "shop" {
			t.Errorf("a v2 error span series not derived from v2's spans: %v", m)
		}
	}
	for _, q := range []string{`ALERTS`, `ALERTS_FOR_STATE`, fmt.Sprintf(`%s{severity="error",version="v2",job!=""}`, semconv.LogRecords)} {
		if got := vector(q); len(got) != 0 {
			t.Errorf("%s: %v, want nothing", q, got)
		}
	}
	refused := 0
	for i, f := range forgeries {
		if f.refused {
			refused += outcomes[i].refused
		}
	}
	_, _, metrics := httpDo(t, http.DefaultClient, "GET", base+"/metrics", read, "")
	if want := fmt.Sprintf(`vigil_ingest_rejected_samples_total{reason="derived_series",receiver="remote_write"} %d`, refused); !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %s", want)
	}
}
