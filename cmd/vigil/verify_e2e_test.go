package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/peers"
)

// TestVerifyE2E runs a real Vigil fed by the OpenTelemetry Go SDK's OTLP
// exporters: two services on v1, then a healthy and a bad v2. `vigil
// verify` must exit 0 for the healthy one and 1 for the bad one, with the
// evidence in its report; the deployments and verdicts survive a restart.
func TestVerifyE2E(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "vigil.yml")
	if err := os.WriteFile(cfg, []byte(demoConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	v := peers.StartVigil(t, data, "--config", cfg)
	base := v.URL()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	send := func(s simService) {
		wg.Go(func() {
			if err := s.run(ctx, v.OTLPHTTP); err != nil {
				t.Error(err)
			}
		})
	}
	send(simService{Service: "cart", Version: "v1", RPS: 40, ErrorRatio: 0.005, Latency: 30 * time.Millisecond, ErrorMessage: "out of stock", Seed: 11})
	send(simService{Service: "ledger", Version: "v1", RPS: 40, ErrorRatio: 0.01, Latency: 30 * time.Millisecond, ErrorMessage: "out of stock", Seed: 12})
	time.Sleep(12 * time.Second)

	for _, body := range []string{
		`{"service":"cart","environment":"production","version":"v2","previousVersion":"v1","strategy":"canary"}`,
		`{"service":"ledger","environment":"production","version":"v2","previousVersion":"v1","strategy":"canary"}`,
	} {
		resp, err := http.Post(base+"/api/v1/deployments", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("record deployment: %s", resp.Status)
		}
	}
	send(simService{Service: "cart", Version: "v2", RPS: 40, ErrorRatio: 0.005, Latency: 30 * time.Millisecond, ErrorMessage: "out of stock", Seed: 13})
	send(simService{Service: "ledger", Version: "v2", RPS: 40, ErrorRatio: 0.15, Latency: 90 * time.Millisecond, ErrorMessage: "ledger write timed out", Seed: 14})

	type run struct {
		stdout, stderr string
		code           int
	}
	runs := map[string]*run{}
	var rw sync.WaitGroup
	for svc, format := range map[string]string{"cart": "text", "ledger": "json"} {
		r := &run{}
		runs[svc] = r
		rw.Go(func() {
			r.stdout, r.stderr, r.code = runVigil(t, "verify", "--server", base, "--service", svc, "--version", "v2", "--wait", "100s", "-o", format)
		})
	}
	rw.Wait()
	cancel()

	good := runs["cart"]
	if good.code != verifyPromote {
		t.Errorf("verify healthy cart v2: exit %d, want %d\n%s\n%s", good.code, verifyPromote, good.stdout, good.stderr)
	}
	for _, want := range []string{"cart v2 in production: PROMOTE", "compared with v1 (running alongside)", "SIGNAL", "error_ratio", "latency_p99"} {
		if !strings.Contains(good.stdout, want) {
			t.Errorf("promote report lacks %q:\n%s", want, good.stdout)
		}
	}
	bad := runs["ledger"]
	if bad.code != verifyRollback {
		t.Fatalf("verify bad ledger v2: exit %d, want %d\n%s\n%s", bad.code, verifyRollback, bad.stdout, bad.stderr)
	}
	var vd verdict.Verdict
	if err := json.Unmarshal([]byte(bad.stdout), &vd); err != nil {
		t.Fatalf("-o json: %v\n%s", err, bad.stdout)
	}
	failing := map[string]bool{}
	for _, s := range vd.Signals {
		if s.Status == verdict.StatusFail {
			failing[s.Name] = true
			if s.PValue == nil || s.EffectSize == nil || s.Baseline == nil || s.Canary == nil || !strings.Contains(s.Link, "/api/v1/query_range?") {
				t.Errorf("failing signal %s lacks evidence: %+v", s.Name, s)
			}
		}
	}
	if !failing["latency_p50"] && !failing["error_ratio"] {
		t.Errorf("failing signals %v: want latency or errors", failing)
	}
	if len(vd.ErrorTraces) == 0 || len(vd.ErrorTraces[0].TraceID) != 32 {
		t.Errorf("no example error traces: %+v", vd.ErrorTraces)
	}
	if len(vd.ErrorLogs) == 0 || vd.ErrorLogs[0].Body != "ledger write timed out" || !vd.ErrorLogs[0].New {
		t.Errorf("error logs evidence = %+v", vd.ErrorLogs)
	}
	// The verdict is a series.
	waitValue(t, base, `count(vigil_verdict_info{service="ledger",version="v2",baseline="v1",decision="rollback"})`, 1)
	waitValue(t, base, `count(vigil_deployment_info{service="ledger",version="v2",previous_version="v1"})`, 1)

	// Deployments and verdicts survive a restart.
	wg.Wait()
	if err := v.Stop(30 * time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	v = peers.StartVigil(t, data, "--config", cfg)
	code, r := apiGet(t, v.URL(), "/api/v1/deployments", url.Values{"service": {"ledger"}})
	if code != 200 || !strings.Contains(string(r.Data), `"version":"v2"`) || !strings.Contains(string(r.Data), `"previousVersion":"v1"`) {
		t.Errorf("deployments after restart: %d %s", code, r.Data)
	}
	code, r = apiGet(t, v.URL(), "/api/v1/verdicts", url.Values{"service": {"ledger"}})
	if code != 200 || !strings.Contains(string(r.Data), `"decision":"rollback"`) {
		t.Errorf("verdicts after restart: %d %.300s", code, r.Data)
	}
	waitValue(t, v.URL(), fmt.Sprintf(`count(vigil_deployment_info{service=%q})`, "ledger"), 1)
}

// TestDemo runs `vigil demo` as a newcomer would: it must show a promote
// and a rollback with their evidence, in under two minutes; each verdict as
// soon as it is final (the bad version's, decided in seconds, first) with
// progress lines while it waits; and never a pending signal next to a
// final decision.
func TestDemo(t *testing.T) {
	start := time.Now()
	stdout, stderr, code := runVigil(t, "demo")
	if code != 0 {
		t.Fatalf("vigil demo: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"checkout v2 in production: PROMOTE", "payments v2 in production: ROLLBACK", "SIGNAL", "[new]", "Example error traces of v2", "waiting: "} {
		if !strings.Contains(stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, stdout)
		}
	}
	rollback, promote := strings.Index(stdout, "payments v2 in production: ROLLBACK"), strings.Index(stdout, "checkout v2 in production: PROMOTE")
	if rollback < 0 || promote < 0 || rollback > promote {
		t.Errorf("the bad version's verdict (decided first) is not printed first:\n%s", stdout)
	}
	if w := strings.Index(stdout, "waiting: "); w < 0 || w > promote {
		t.Errorf("no progress line before the healthy version's verdict:\n%s", stdout)
	}
	if strings.Contains(stdout, "pending") {
		t.Errorf("the demo shows a pending signal:\n%s", stdout)
	}
	if d := time.Since(start); d > 2*time.Minute {
		t.Errorf("demo took %s, want under 2 minutes", d)
	}
}

// TestVerifyExitCodes covers the exit codes other than promote and
// rollback: 2 when no decision comes within --wait, 3 when the server
// refuses the request or cannot be reached.
func TestVerifyExitCodes(t *testing.T) {
	v := peers.StartVigil(t, "")
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no traffic within --wait", []string{"--server", v.URL(), "--service", "cart", "--version", "v2", "--baseline", "v1", "--wait", "2s", "--poll-interval", "500ms"}, verifyInconclusive, "no decision within --wait"},
		{"no baseline known", []string{"--server", v.URL(), "--service", "cart", "--version", "v2"}, verifyError, "baseline: missing"},
		{"server down", []string{"--server", "http://" + peers.FreeAddr(t), "--service", "cart", "--version", "v2", "--baseline", "v1"}, verifyError, "reach"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runVigil(t, append([]string{"verify"}, tc.args...)...)
			if code != tc.code || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("exit %d, stderr %q; want %d mentioning %q\n%s", code, stderr, tc.code, tc.stderr, stdout)
			}
		})
	}
}
