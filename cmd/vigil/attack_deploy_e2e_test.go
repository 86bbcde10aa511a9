package main

import (
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
// automatically through the listener, with deploySection added under deploy:.
func startDeployVigil(t *testing.T, hook string, deploySection string) *peers.Vigil {
	t.Helper()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cat := write("catalog.yml", fmt.Sprintf(`
defaults: {environment: production}
services:
  - name: checkout
    rollback: {automatic: true, webhook: {url: %q}}
`, hook))
	tok := write("admin.token", "s3cret\n")
	cfg := write("vigil.yml", fmt.Sprintf("deploy:\n  catalog: %s\n  bearer_token_file: %s\n%s", cat, tok, deploySection))
	return peers.StartVigil(t, filepath.Join(dir, "data"), "--config", cfg)
}

func post(t *testing.T, url, body string) (int, string) {
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
	v := startDeployVigil(t, hook.URL, `  step: 1s
  rate_window: 2s
  max_evaluation_errors: 2
  signals:
    - {name: broken, query: 'label_replace(up{$selector}, "x", "$1", "y", "(")'}
`)
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
			code, body := post(t, base+a.path, a.body)
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
	for _, want := range []string{"vigil_verifications_running 0", `vigil_verdicts_total{decision="error"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if c := hook.Calls(); len(c) != 0 {
		t.Errorf("the rollback webhook was called: %q", c)
	}
}

// TestOperatorSignalRollsBack is the control of TestAttackDeploy: the same
// critical signal, from the operator's deploy.signals rather than the
// request, rolls checkout back — so the refusal above is what kept the
// webhook silent.
func TestOperatorSignalRollsBack(t *testing.T) {
	hook := newRollbackListener(t)
	v := startDeployVigil(t, hook.URL, `  signals:
    - {name: x, query: 'vector(1)', max: 0, critical: true}
`)
	start := time.Now().Add(-20 * time.Minute).UTC().Format(time.RFC3339)
	code, body := post(t, v.URL()+"/api/v1/verify", `{"service":"checkout","version":"v2","baseline":"v1","window":"30m","start":"`+start+`"}`)
	if code != http.StatusCreated || !strings.Contains(body, `"phase":"rollback"`) {
		t.Fatalf("verify: %d %.500s", code, body)
	}
	eventually(t, 30*time.Second, "the rollback webhook", func() bool { return len(hook.Calls()) > 0 })
	if c := hook.Calls(); len(c) != 1 || !strings.Contains(c[0], `"service":"checkout"`) || !strings.Contains(c[0], `"failingSignals":["x"]`) {
		t.Errorf("webhook calls %q", c)
	}
}
