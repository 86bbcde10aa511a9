package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/internal/peers"
)

// rollbackListener is a rollback webhook on 127.0.0.1: it records every
// call, so a test can prove that nothing was rolled back.
type rollbackListener struct {
	*httptest.Server
	mu    sync.Mutex
	calls []string
}

func newRollbackListener(t *testing.T) *rollbackListener {
	l := &rollbackListener{}
	l.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		l.mu.Lock()
		l.calls = append(l.calls, string(b))
		l.mu.Unlock()
	}))
	t.Cleanup(l.Close)
	return l
}

func (l *rollbackListener) Calls() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.calls...)
}

// startDeployVigil starts a Vigil whose catalog rolls checkout back
// automatically through the listener, with deploySection added under
// deploy:, and with one token per scope when withAuth (tokens by scope).
func startDeployVigil(t *testing.T, hook string, deploySection string, withAuth bool) (*peers.Vigil, map[auth.Scope]string) {
	t.Helper()
	dir := t.TempDir()
	cat := filepath.Join(dir, "catalog.yml")
	if err := os.WriteFile(cat, []byte(fmt.Sprintf(`
defaults: {environment: production}
services:
  - name: checkout
    rollback: {automatic: true, webhook: {url: %q}}
`, hook)), 0o600); err != nil {
		t.Fatal(err)
	}
	var authSection string
	var tokens map[auth.Scope]string
	if withAuth {
		authSection, tokens = tokenFiles(t, dir)
	}
	cfg := filepath.Join(dir, "vigil.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("%sdeploy:\n  catalog: %s\n%s", authSection, cat, deploySection)), 0o600); err != nil {
		t.Fatal(err)
	}
	return peers.StartVigil(t, filepath.Join(dir, "data"), "--config", cfg), tokens
}

func postDeploy(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAttackDeploy replays the attacks on the verdict path of issue 14
// against the real binary, with authentication off (every request is
// anonymous): none may stall the process or roll anything back.
func TestAttackDeploy(t *testing.T) {
	hook := newRollbackListener(t)
	// Every signal query of this Vigil fails when run, as a broken custom
	// signal does: its verifications must still end.
	v, _ := startDeployVigil(t, hook.URL, `  step: 1s
  rate_window: 2s
  max_evaluation_errors: 2
  signals:
    - {name: broken, query: 'label_replace(up{$selector}, "x", "$1", "y", "(")'}
`, false)
	base := v.URL()
	twentyMinutesAgo := time.Now().Add(-20 * time.Minute).UTC().Format(time.RFC3339)
	attacks := []struct {
		name, path, body string
		code             int
		want             string
	}{
		{"a 10000d window from 1970 (pinned a core and 3.8 GB, never ended)", "/api/v1/verify",
			`{"service":"checkout","version":"v2","baseline":"v1","window":"10000d","start":"1970-01-01T00:00:00Z"}`, 400, "deploy.max_window"},
		{"the same through the verdict hook", "/api/v1/hooks/verdict",
			`{"service":"checkout","version":"v2","baseline":"v1","window":"10000d","start":"1970-01-01T00:00:00Z"}`, 400, "deploy.max_window"},
		{"a start in 1970 alone", "/api/v1/verify",
			`{"service":"checkout","version":"v2","baseline":"v1","start":"1970-01-01T00:00:00Z"}`, 400, "more than one window"},
		{"a request-supplied critical signal rolls checkout back", "/api/v1/verify",
			`{"service":"checkout","version":"v2","baseline":"v1","window":"30m","start":"` + twentyMinutesAgo + `","signals":[{"name":"x","query":"vector(1)","max":0,"critical":true}]}`,
			400, "signals[0] (x): a verify request may not bring critical: true, max"},
		{"the same through the verdict hook", "/api/v1/hooks/verdict?type=rollback",
			`{"service":"checkout","version":"v2","baseline":"v1","window":"30m","start":"` + twentyMinutesAgo + `","signals":[{"name":"x","query":"vector(1)","max":0,"critical":true}]}`,
			400, "deploy.allow_request_signals is false"},
		{"an alert signal does the same", "/api/v1/verify",
			`{"service":"checkout","version":"v2","baseline":"v1","window":"30m","start":"` + twentyMinutesAgo + `","signals":[{"name":"x","query":"vector(1)","kind":"alert"}]}`,
			400, "kind: alert"},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			code, body := postDeploy(t, base+a.path, a.body)
			if code != a.code || !strings.Contains(body, a.want) {
				t.Errorf("%d %s, want %d naming %q", code, body, a.code, a.want)
			}
			// The process stays responsive.
			if code, _ := apiGet(t, base, "/api/v1/query", url.Values{"query": {"vector(1)"}}); code != 200 {
				t.Errorf("query after the attack: %d", code)
			}
		})
	}

	// A verification whose queries keep failing ends: `vigil verify` exits
	// 3 with the error verdict (two failures in a row, a second apart).
	stdout, stderr, code := runVigil(t, "verify", "--server", base, "--service", "checkout", "--version", "v3", "--baseline", "v1",
		"--wait", "60s", "--poll-interval", "500ms")
	if code != verifyError || !strings.Contains(stdout, "checkout v3 in production: ERROR") || !strings.Contains(stderr, "evaluations in a row failed") {
		t.Errorf("verify of a failing verification: exit %d, want %d\n%s\n%s", code, verifyError, stdout, stderr)
	}
	code, r := apiGet(t, base, "/api/v1/verdicts", url.Values{"service": {"checkout"}})
	if code != 200 || !strings.Contains(string(r.Data), `"decision":"error"`) {
		t.Errorf("verdicts: %d %.300s", code, r.Data)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"vigil_verifications_running 0", `vigil_verdicts_total{decision="error",mode="enforce"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if c := hook.Calls(); len(c) != 0 {
		t.Errorf("the rollback webhook was called: %q", c)
	}
}

// TestOperatorSignalRollsBack is the control of TestAttackDeploy, with
// authentication on (Vigil acts only then) and the CI's deploy token: the
// request-supplied critical signal is still refused and nothing is called;
// the same signal from the operator's deploy.signals rolls checkout back,
// once, recorded with the token's name.
func TestOperatorSignalRollsBack(t *testing.T) {
	hook := newRollbackListener(t)
	v, tokens := startDeployVigil(t, hook.URL, `  signals:
    - {name: x, query: 'vector(1)', max: 0, critical: true}
`, true)
	ci := tokens[auth.ScopeDeploy]
	start := time.Now().Add(-20 * time.Minute).UTC().Format(time.RFC3339)
	code, _, body := httpDo(t, http.DefaultClient, "POST", v.URL()+"/api/v1/deployments", ci,
		`{"service":"checkout","environment":"production","version":"v2","previousVersion":"v1","startedAt":"`+start+`"}`)
	if code != http.StatusCreated {
		t.Fatalf("record: %d %s", code, body)
	}
	var rec struct{ Data struct{ ID string } }
	if err := json.Unmarshal([]byte(body), &rec); err != nil {
		t.Fatal(err)
	}

	code, _, body = httpDo(t, http.DefaultClient, "POST", v.URL()+"/api/v1/verify", ci,
		`{"service":"checkout","version":"v2","window":"30m","start":"`+start+`","signals":[{"name":"y","query":"vector(1)","max":0,"critical":true}]}`)
	if code != http.StatusBadRequest || !strings.Contains(body, "deploy.allow_request_signals is false") {
		t.Fatalf("request-supplied critical signal with the deploy token: %d %.300s, want 400", code, body)
	}
	if c := hook.Calls(); len(c) != 0 {
		t.Fatalf("the webhook was called: %q", c)
	}

	code, _, body = httpDo(t, http.DefaultClient, "POST", v.URL()+"/api/v1/verify", ci, `{"service":"checkout","version":"v2","window":"30m"}`)
	if code != http.StatusCreated || !strings.Contains(body, `"phase":"rollback"`) {
		t.Fatalf("verify: %d %.500s", code, body)
	}
	eventually(t, 30*time.Second, "the rollback webhook", func() bool { return len(hook.Calls()) > 0 })
	if c := hook.Calls(); len(c) != 1 || !strings.Contains(c[0], `"service":"checkout"`) || !strings.Contains(c[0], `"failingSignals":["x"]`) {
		t.Errorf("webhook calls %q", c)
	}
	eventually(t, 30*time.Second, "the action recorded", func() bool {
		_, _, body := httpDo(t, http.DefaultClient, "GET", v.URL()+"/api/v1/deployments/"+rec.Data.ID, tokens[auth.ScopeRead], "")
		return strings.Contains(body, `"ok":true`) && strings.Contains(body, `"principal":"ci"`)
	})
}
