package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/internal/peers"
)

// tokenFiles writes one token per scope in dir and returns the auth:
// section naming them, and the token values by scope.
func tokenFiles(t *testing.T, dir string) (section string, tokens map[auth.Scope]string) {
	t.Helper()
	tokens = map[auth.Scope]string{}
	section = "auth:\n  tokens:\n"
	names := map[auth.Scope]string{auth.ScopeWrite: "agents", auth.ScopeRead: "grafana", auth.ScopeDeploy: "ci", auth.ScopeAdmin: "ops"}
	for _, sc := range auth.Scopes {
		v := fmt.Sprintf("%s-%d-token", names[sc], time.Now().UnixNano())
		p := filepath.Join(dir, names[sc]+".token")
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		tokens[sc] = v
		section += fmt.Sprintf("    - {name: %s, token_file: %s, scopes: [%s]}\n", names[sc], p, sc)
	}
	return section, tokens
}

// TestServeIsSecureByDefault: off loopback and without credentials, serve
// refuses to start and says how to add tokens; web.allow_unauthenticated
// lets it start with a warning; tokens let it start.
func TestServeIsSecureByDefault(t *testing.T) {
	dir := t.TempDir()
	port := strings.TrimPrefix(peers.FreeAddr(t), "127.0.0.1:")
	_, stderr, code := runVigil(t, "serve", "--listen", "0.0.0.0:"+port, "--storage.path", filepath.Join(dir, "refused"),
		"--otlp.grpc.listen-address", "", "--otlp.http.listen-address", "")
	if code == 0 || !contains(stderr, "refusing to serve 0.0.0.0:"+port+" without authentication", "auth:", "tokens:", "token_file:", "scopes: [write]", "web.allow_unauthenticated", "docs/security.md") {
		t.Fatalf("serve on 0.0.0.0 without auth: exit %d\n%s", code, stderr)
	}
	// The OTLP listeners count too.
	_, stderr, code = runVigil(t, "serve", "--listen", peers.FreeAddr(t), "--storage.path", filepath.Join(dir, "refused2"),
		"--otlp.grpc.listen-address", "0.0.0.0:"+port, "--otlp.http.listen-address", "")
	if code == 0 || !strings.Contains(stderr, "refusing to serve 0.0.0.0:"+port) {
		t.Fatalf("OTLP/gRPC on 0.0.0.0 without auth: exit %d\n%s", code, stderr)
	}

	// Accepting the risk explicitly: it starts, and says so.
	allow := filepath.Join(dir, "allow.yml")
	if err := os.WriteFile(allow, []byte("web:\n  allow_unauthenticated: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := peers.StartIn(t, dir, "vigil", peers.VigilBinary(t), "serve", "--config.file", allow, "--listen", "0.0.0.0:"+port,
		"--storage.path", filepath.Join(dir, "allowed"), "--otlp.grpc.listen-address", "", "--otlp.http.listen-address", "")
	p.Addr = "127.0.0.1:" + port
	p.WaitHTTP(t, p.URL()+"/-/ready", 60*time.Second)
	if !contains(p.Logs(), "level=WARN", "Serving without authentication on a non-loopback address") {
		t.Errorf("no warning at start:\n%s", p.Logs())
	}
	if code, _, _ := httpDo(t, http.DefaultClient, "GET", p.URL()+"/api/v1/status/buildinfo", "", ""); code != 200 {
		t.Errorf("unauthenticated query with allow_unauthenticated: %d, want 200", code)
	}
	if err := p.Stop(10 * time.Second); err != nil {
		t.Errorf("stop: %v", err)
	}

	// With tokens, the same address is served, to token holders only.
	section, tokens := tokenFiles(t, dir)
	secured := filepath.Join(dir, "secured.yml")
	if err := os.WriteFile(secured, []byte(section), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, _, code := runVigil(t, "check", "config", secured)
	if code != 0 || !strings.Contains(stdout, "4 tokens") {
		t.Fatalf("check config: exit %d\n%s", code, stdout)
	}
	p = peers.StartIn(t, dir, "vigil", peers.VigilBinary(t), "serve", "--config.file", secured, "--listen", "0.0.0.0:"+port,
		"--storage.path", filepath.Join(dir, "secured"), "--otlp.grpc.listen-address", "", "--otlp.http.listen-address", "")
	p.Addr = "127.0.0.1:" + port
	p.WaitHTTP(t, p.URL()+"/-/ready", 60*time.Second)
	if code, _, _ := httpDo(t, http.DefaultClient, "GET", p.URL()+"/api/v1/status/buildinfo", "", ""); code != 401 {
		t.Errorf("unauthenticated query: %d, want 401", code)
	}
	if code, _, _ := httpDo(t, http.DefaultClient, "GET", p.URL()+"/api/v1/status/buildinfo", tokens[auth.ScopeRead], ""); code != 200 {
		t.Errorf("query with a read token: %d, want 200", code)
	}
	// Rotation: rewrite the file, SIGHUP; the old token stops working.
	if err := os.WriteFile(filepath.Join(dir, "grafana.token"), []byte("grafana-rotated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var last string
	eventuallyOK(t, 10*time.Second, "the rotated token after SIGHUP", func() bool {
		code, _, body := httpDo(t, http.DefaultClient, "GET", p.URL()+"/api/v1/status/buildinfo", "grafana-rotated", "")
		last = fmt.Sprint(code, body)
		return code == 200
	}, &last)
	if code, _, _ := httpDo(t, http.DefaultClient, "GET", p.URL()+"/api/v1/status/buildinfo", tokens[auth.ScopeRead], ""); code != 401 {
		t.Errorf("the old token after rotation: %d, want 401", code)
	}
	for _, secret := range append(mapValues(tokens), "grafana-rotated") {
		if strings.Contains(p.Logs(), secret) {
			t.Errorf("the log shows a token")
		}
	}
}

func mapValues[K comparable, V any](m map[K]V) []V {
	var out []V
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestCheckConfigChecksCredentials: vigil check config reads the token
// files and the web config file as serve would.
func TestCheckConfigChecksCredentials(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.token", "abc123\n")
	empty := write("empty.token", "\n")
	for _, tc := range []struct{ name, yaml, want string }{
		{"missing file", "auth:\n  tokens:\n    - {name: ci, token_file: " + filepath.Join(dir, "nope") + ", scopes: [deploy]}\n", "auth.tokens[0] (ci): token_file: open"},
		{"empty file", "auth:\n  tokens:\n    - {name: ci, token_file: " + empty + ", scopes: [deploy]}\n", "is empty"},
		{"shared token", "auth:\n  tokens:\n    - {name: a, token_file: " + good + ", scopes: [read]}\n    - {name: b, token_file: " + good + ", scopes: [admin]}\n", `the same token as "a"`},
		{"unknown scope", "auth:\n  tokens:\n    - {name: a, token_file: " + good + ", scopes: [everything]}\n", `unknown scope "everything"`},
		{"bad web config", "web:\n  config_file: " + write("web.yml", "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n") + "\n", "web config file"},
		{"bad bcrypt", "web:\n  config_file: " + write("web2.yml", "basic_auth_users:\n  alice: plaintext\n") + "\n", "web config file"},
		{"user not in web config", "auth:\n  users:\n    - {name: bob, scopes: [read]}\n", `"bob" is not among the basic_auth_users`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, _, code := runVigil(t, "check", "config", write(strings.ReplaceAll(tc.name, " ", "_")+".yml", tc.yaml))
			if code != exitFailure || !contains(stdout, "FAILED", tc.want) {
				t.Errorf("exit %d, want 1 saying %q:\n%s", code, tc.want, stdout)
			}
		})
	}
}

// TestNoUnauthenticatedPathToARollback attacks a Vigil whose service rolls
// back automatically through a webhook, the way someone on the same network
// would: verify with a critical signal, the Flagger gate, forged deployment
// events and a manual rollback, without a token, with an unknown one and
// with tokens of the wrong scope. The webhook listener proves nothing was
// called; then an admin's manual rollback proves the action was armed.
func TestNoUnauthenticatedPathToARollback(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	var calls []string
	hookSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		calls = append(calls, string(b))
		mu.Unlock()
	}))
	defer hookSrv.Close()
	hook := hookSrv.URL
	catalog := filepath.Join(dir, "catalog.yml")
	if err := os.WriteFile(catalog, []byte(`
defaults: {environment: production, namespace: shop}
services:
  - name: checkout
    rollback:
      automatic: true
      webhook: {url: "`+hook+`"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	ghSecret := filepath.Join(dir, "github.secret")
	if err := os.WriteFile(ghSecret, []byte("gh-hmac-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	section, tokens := tokenFiles(t, dir)
	cfgFile := filepath.Join(dir, "vigil.yml")
	if err := os.WriteFile(cfgFile, []byte(section+"deploy:\n  catalog: "+catalog+"\n  step: 1s\n  rate_window: 2s\n  github_secret_file: "+ghSecret+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	v := peers.StartVigil(t, "", "--config.file", cfgFile)
	base := v.URL()

	// A legitimate deployment, recorded by CI, that an attacker wants rolled back.
	start := time.Now().Add(-20 * time.Minute).UTC().Format(time.RFC3339)
	code, _, body := httpDo(t, http.DefaultClient, "POST", base+"/api/v1/deployments", tokens[auth.ScopeDeploy],
		`{"service":"checkout","environment":"production","version":"v2","previousVersion":"v1","startedAt":"`+start+`"}`)
	if code != 201 {
		t.Fatalf("record deployment with the deploy token: %d %s", code, body)
	}
	id := jsonField(t, body, "id")

	critical := `{"service":"checkout","environment":"production","version":"v2","baseline":"v1","start":"` + start +
		`","signals":[{"name":"x","query":"vector(1)","max":0,"critical":true}]}`
	forged := `{"service":"checkout","environment":"production","version":"v3","previousVersion":"v2"}`
	attacks := []struct {
		name, method, path, body string
		header                   map[string]string
		want                     int
	}{
		{"verify, no token", "POST", "/api/v1/verify", critical, nil, 401},
		{"verify, unknown token", "POST", "/api/v1/verify", critical, bearerHeader("guess"), 401},
		{"verify, write token", "POST", "/api/v1/verify", critical, bearerHeader(tokens[auth.ScopeWrite]), 403},
		{"verify, read token", "POST", "/api/v1/verify", critical, bearerHeader(tokens[auth.ScopeRead]), 403},
		{"verify, token in the URL", "POST", "/api/v1/verify?access_token=" + tokens[auth.ScopeDeploy], critical, nil, 401},
		{"verify, basic auth", "POST", "/api/v1/verify", critical, map[string]string{"Authorization": "Basic Y2k6Y2k="}, 401},
		{"hook, no token", "POST", "/api/v1/hooks/verdict?type=rollback", critical, nil, 401},
		{"hook, read token in the URL", "POST", "/api/v1/hooks/verdict?type=rollback&access_token=" + tokens[auth.ScopeRead], critical, nil, 403},
		{"hook, unknown token in the URL", "POST", "/api/v1/hooks/verdict?type=rollback&access_token=guess", critical, nil, 401},
		{"hook, admin token", "POST", "/api/v1/hooks/verdict?type=rollback", critical, bearerHeader(tokens[auth.ScopeAdmin]), 403},
		{"forged deployment, no token", "POST", "/api/v1/deployments", forged, nil, 401},
		{"forged deployment, write token", "POST", "/api/v1/deployments", forged, bearerHeader(tokens[auth.ScopeWrite]), 403},
		{"forged GitHub event, bad signature", "POST", "/api/v1/deployments/github", `{"deployment_status":{"state":"success"}}`,
			map[string]string{"X-GitHub-Event": "deployment_status", "X-Hub-Signature-256": "sha256=" + strings.Repeat("0", 64)}, 401},
		{"forged Flagger event, unknown token", "POST", "/api/v1/deployments/flagger?access_token=guess", `{"name":"checkout","namespace":"shop","phase":"Failed"}`, nil, 401},
		{"manual rollback, no token", "POST", "/api/v1/deployments/" + id + "/rollback", "", nil, 401},
		{"manual rollback, deploy token", "POST", "/api/v1/deployments/" + id + "/rollback", "", bearerHeader(tokens[auth.ScopeDeploy]), 403},
		{"manual rollback, read token", "POST", "/api/v1/deployments/" + id + "/rollback", "", bearerHeader(tokens[auth.ScopeRead]), 403},
		{"reload, no token", "POST", "/-/reload", "", nil, 401},
		{"reload, deploy token", "POST", "/-/reload", "", bearerHeader(tokens[auth.ScopeDeploy]), 403},
	}
	for _, a := range attacks {
		req, err := http.NewRequest(a.method, base+a.path, strings.NewReader(a.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		for k, val := range a.header {
			req.Header.Set(k, val)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", a.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != a.want {
			t.Errorf("%s: %d %s, want %d", a.name, resp.StatusCode, b, a.want)
		}
	}

	// Give the verification loop (step 1s) time to act, had anything started.
	time.Sleep(3 * time.Second)
	mu.Lock()
	if len(calls) != 0 {
		t.Errorf("the rollback webhook was called %d times by unauthorized requests: %q", len(calls), calls)
	}
	mu.Unlock()
	_, _, verdicts := httpDo(t, http.DefaultClient, "GET", base+"/api/v1/verdicts", tokens[auth.ScopeRead], "")
	if !strings.Contains(verdicts, `"data":[]`) {
		t.Errorf("verifications were started: %s", verdicts)
	}
	_, _, deps := httpDo(t, http.DefaultClient, "GET", base+"/api/v1/deployments", tokens[auth.ScopeRead], "")
	if strings.Contains(deps, `"v3"`) {
		t.Errorf("a forged deployment was recorded: %s", deps)
	}

	// The action was armed: an admin's manual rollback calls the webhook once.
	if code, _, body := httpDo(t, http.DefaultClient, "POST", base+"/api/v1/deployments/"+id+"/rollback", tokens[auth.ScopeAdmin], ""); code != 200 {
		t.Fatalf("manual rollback with the admin token: %d %s", code, body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 1 || !strings.Contains(calls[0], `"rollbackTo":"v1"`) {
		t.Errorf("webhook calls after the admin's rollback: %q, want one rolling back to v1", calls)
	}
	if !strings.Contains(v.Logs(), `msg="Rolled back"`) {
		t.Errorf("the rollback was not logged:\n%s", v.Logs())
	}
}

// TestPrometheusAndPromtoolOverTLSWithTokens: Debian's Prometheus
// remote-writes into a Vigil served over TLS with bearer tokens, using its
// own authorization and tls_config, and scrapes Vigil's /metrics with a read
// token; promtool and `vigil query --http.config.file` read it back.
func TestPrometheusAndPromtoolOverTLSWithTokens(t *testing.T) {
	promtool := peers.Binary(t, "promtool")
	pki := newTestPKI(t)
	dir := t.TempDir()
	section, tokens := tokenFiles(t, dir)
	web := pki.webConfig(t, "", "")
	cfgFile := filepath.Join(dir, "vigil.yml")
	if err := os.WriteFile(cfgFile, []byte(section), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := peers.FreeAddr(t)
	p := peers.StartIn(t, dir, "vigil", peers.VigilBinary(t), "serve", "--config.file", cfgFile, "--web.config.file", web,
		"--listen", addr, "--storage.path", filepath.Join(dir, "data"), "--otlp.grpc.listen-address", "", "--otlp.http.listen-address", "")
	base := "https://" + addr
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.clientTLS(nil)}}
	waitTLS(t, p, client, base+"/-/ready")

	writeTok := filepath.Join(dir, "agents.token")
	readTok := filepath.Join(dir, "grafana.token")
	prom := peers.StartPrometheus(t, func(promAddr string) string {
		return fmt.Sprintf(`
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['%s']
  - job_name: vigil
    scheme: https
    authorization: {credentials_file: %s}
    tls_config: {ca_file: %s}
    static_configs:
      - targets: ['%s']
remote_write:
  - url: %s/api/v1/write
    authorization: {credentials_file: %s}
    tls_config: {ca_file: %s}
    queue_config:
      batch_send_deadline: 1s
`, promAddr, readTok, pki.caFile, addr, base, writeTok, pki.caFile)
	})

	httpCfg := filepath.Join(dir, "http.yml")
	if err := os.WriteFile(httpCfg, []byte(fmt.Sprintf("authorization:\n  credentials_file: %s\ntls_config:\n  ca_file: %s\n", readTok, pki.caFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	var out string
	eventuallyOK(t, 60*time.Second, "Prometheus's samples and its scrape of Vigil, read with vigil query", func() bool {
		o, e, code := runVigil(t, "query", "--server", base, "--http.config.file", httpCfg, "-o", "json", `up{job=~"prometheus|vigil"} == 1`)
		out = o + e
		var r struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
			} `json:"result"`
		}
		return code == 0 && json.Unmarshal([]byte(o), &r) == nil && len(r.Result) == 2
	}, &out)

	// Without credentials the same query is refused, and vigil query says so.
	_, stderr, code := runVigil(t, "query", "--server", base, "--http.config.file", writeOnlyHTTPConfig(t, dir, pki.caFile), "up")
	if code == 0 || !strings.Contains(stderr, "403") {
		t.Errorf("vigil query with a write token: exit %d\n%s", code, stderr)
	}
	_, stderr, code = runVigil(t, "query", "--server", base, "--bearer-token-file", readTok, "up")
	if code == 0 || !strings.Contains(stderr, "certificate") {
		t.Errorf("vigil query without the CA: exit %d\n%s", code, stderr)
	}

	// promtool (Debian's 2.42, before --http.config.file) with a header and
	// the CA through SSL_CERT_FILE.
	var promOut string
	eventuallyOK(t, 30*time.Second, "promtool query range over TLS with a read token", func() bool {
		now := time.Now()
		cmd := exec.Command(promtool, "query", "range", "--header", "Authorization: Bearer "+tokens[auth.ScopeRead],
			"--start", fmt.Sprint(now.Add(-30*time.Second).Unix()), "--end", fmt.Sprint(now.Unix()), "--step", "1s", base, `up{job="vigil"}`)
		cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+pki.caFile)
		b, err := cmd.CombinedOutput()
		promOut = fmt.Sprint(err, "\n", string(b))
		return err == nil && strings.Contains(string(b), "1 @[")
	}, &promOut)
	now := time.Now()
	cmd := exec.Command(promtool, "query", "range", "--start", fmt.Sprint(now.Add(-30*time.Second).Unix()), "--end", fmt.Sprint(now.Unix()), "--step", "1s", base, `up`)
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+pki.caFile)
	if promOut, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("promtool without a token was answered:\n%s", promOut)
	}
	_ = prom
}

func writeOnlyHTTPConfig(t *testing.T, dir, ca string) string {
	t.Helper()
	p := filepath.Join(dir, "http-write.yml")
	if err := os.WriteFile(p, []byte(fmt.Sprintf("authorization:\n  credentials_file: %s\ntls_config:\n  ca_file: %s\n", filepath.Join(dir, "agents.token"), ca)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitTLS polls url with client until it answers 200.
func waitTLS(t *testing.T, p *peers.Process, client *http.Client, url string) {
	t.Helper()
	var last string
	eventuallyOK(t, 60*time.Second, url, func() bool {
		if p.Exited() {
			t.Fatalf("vigil exited:\n%s", p.Logs())
		}
		resp, err := client.Get(url)
		if err != nil {
			last = err.Error()
			return false
		}
		resp.Body.Close()
		last = resp.Status
		return resp.StatusCode == 200
	}, &last)
}

func bearerHeader(tok string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + tok}
}

// httpDo sends a request with an optional bearer token and body.
func httpDo(t *testing.T, c *http.Client, method, url, token, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Header, string(b)
}

// jsonField returns data.<key> of an API envelope as a string.
func jsonField(t *testing.T, body, key string) string {
	t.Helper()
	var env struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatalf("not an API envelope: %v\n%s", err, body)
	}
	v, _ := env.Data[key].(string)
	return v
}
