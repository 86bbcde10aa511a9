package deploy

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/internal/memstore"
	"github.com/vigilhq/vigil/query"
	"github.com/vigilhq/vigil/storage"
)

type testServer struct {
	*httptest.Server
	hook *Hook
	mem  *memstore.Store
}

// newTestServer runs the hook's API over Vigil's real (empty) storage and
// PromQL engine; series go to an in-memory store.
func newTestServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	return newTestServerWith(t, cfg, nil, false)
}

// newTestServerWith is newTestServer behind authn (nil: authentication off),
// with rollback actions allowed or not.
func newTestServerWith(t testing.TB, cfg Config, authn *auth.Authenticator, allowActions bool) *testServer {
	t.Helper()
	scfg := storage.DefaultConfig()
	scfg.Path = t.TempDir()
	st, err := storage.Open(scfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	eng, err := query.NewEngine(query.DefaultConfig(), "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	mem := memstore.New()
	h, err := New(Options{Config: cfg, Dir: scfg.Path, Out: mem, Querier: PromQL{Engine: eng, Queryable: st}, Actors: []Actor{WebhookActor{}}, AllowActions: allowActions})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	mux := auth.NewMux(authn, nil)
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &testServer{Server: srv, hook: h, mem: mem}
}

type reply struct {
	code   int
	header http.Header
	Status string          `json:"status"`
	Data   json.RawMessage `json:"data"`
	Error  string          `json:"error"`
}

func call(t *testing.T, method, url, body string, header ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := reply{code: resp.StatusCode, header: resp.Header}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s %s: %d, not JSON: %s", method, url, resp.StatusCode, b)
	}
	return r
}

func TestDeploymentsAPI(t *testing.T) {
	s := newTestServer(t, DefaultConfig())
	for _, f := range Formats {
		body, _ := os.ReadFile(filepath.Join("testdata", f+".json"))
		path := "/api/v1/deployments/" + f
		if f == FormatFlagger {
			path += "?version=v2.4.0&environment=production"
		}
		r := call(t, "POST", s.URL+path, string(body), "X-GitHub-Event", "deployment_status")
		if r.code != http.StatusCreated && r.code != http.StatusOK {
			t.Errorf("%s: %d %s", f, r.code, r.Error)
		}
	}
	// The five events describe one deployment: the first created it.
	r := call(t, "GET", s.URL+"/api/v1/deployments?service=checkout", "")
	var list []Deployment
	if err := json.Unmarshal(r.Data, &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Version != "v2.4.0" || list[0].PreviousVersion != "v2.3.1" || list[0].FinishedAt == nil {
		t.Fatalf("deployments = %+v", list)
	}
	if r := call(t, "GET", s.URL+"/api/v1/deployments/"+list[0].ID, ""); r.code != 200 {
		t.Errorf("GET by id: %d", r.code)
	}
	if r := call(t, "GET", s.URL+"/api/v1/deployments/nope", ""); r.code != 404 {
		t.Errorf("GET unknown id: %d", r.code)
	}
	// Bad payloads: 400 naming the field.
	for path, body := range map[string]string{
		"/api/v1/deployments":         `{"version":"v2"}`,
		"/api/v1/deployments/flagger": `{"name":"checkout","phase":"Progressing"}`,
		"/api/v1/deployments/nope":    `{}`,
	} {
		r := call(t, "POST", s.URL+path, body)
		if r.code != 400 || r.Status != "error" || r.Error == "" {
			t.Errorf("POST %s %s: %d %q", path, body, r.code, r.Error)
		}
	}
	if r := call(t, "POST", s.URL+"/api/v1/deployments/github", `{}`, "X-GitHub-Event", "ping"); r.code != 200 {
		t.Errorf("GitHub ping: %d", r.code)
	}
	if r := call(t, "POST", s.URL+"/api/v1/deployments/github", `{}`, "X-GitHub-Event", "push"); r.code != 202 {
		t.Errorf("GitHub push: %d", r.code)
	}
	big := `{"service":"` + strings.Repeat("a", 2<<20) + `"}`
	if r := call(t, "POST", s.URL+"/api/v1/deployments", big); r.code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d", r.code)
	}
	// The deployment is a series: info and the start marker (0 then the start).
	info := `{__name__="vigil_deployment_info", commit="9f2c1e4b7a", environment="production", namespace="shop", pipeline="github-actions:shop/checkout:deploy", previous_version="v2.3.1", service="checkout", strategy="canary", version="v2.4.0"}`
	if smp, ok := s.mem.Last(info); !ok || smp.V != 1 {
		t.Errorf("no %s; series: %v", info, s.mem.Series())
	}
	if n := len(s.mem.Select("vigil_deployment_info")); n != 1 {
		t.Errorf("%d vigil_deployment_info series for one deployment, want 1: %v", n, s.mem.Series())
	}
	started := `{__name__="vigil_deployment_started_timestamp_seconds", environment="production", namespace="shop", service="checkout", version="v2.4.0"}`
	if smp, ok := s.mem.Last(started); !ok || smp.V != float64(time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC).Unix()) {
		t.Errorf("%s = %+v", started, smp)
	}
}

func TestVerifyContract(t *testing.T) {
	s := newTestServer(t, DefaultConfig())
	call(t, "POST", s.URL+"/api/v1/deployments", `{"service":"checkout","environment":"production","version":"v2","previousVersion":"v1"}`)

	// Start: 201 with a Location to poll (Spinnaker's webhook stage), phase
	// running until final; a second identical POST returns the same job.
	r := call(t, "POST", s.URL+"/api/v1/verify", `{"service":"checkout","version":"v2","window":"5m"}`)
	if r.code != http.StatusCreated {
		t.Fatalf("verify: %d %s", r.code, r.Error)
	}
	var st VerifyStatus
	if err := json.Unmarshal(r.Data, &st); err != nil {
		t.Fatal(err)
	}
	if st.Phase != "running" || st.Decision != "inconclusive" || st.Verdict == nil || st.Verdict.Baseline != "v1" || st.Verdict.NeedSecs <= 0 {
		t.Errorf("status = %+v", st)
	}
	if loc := r.header.Get("Location"); loc != s.URL+"/api/v1/verify/"+st.ID || st.StatusURL != loc {
		t.Errorf("Location = %q", loc)
	}
	if r2 := call(t, "POST", s.URL+"/api/v1/verify?service=checkout&version=v2&window=5m", ``); r2.code != http.StatusOK || !strings.Contains(string(r2.Data), st.ID) {
		t.Errorf("repeated verify: %d %s", r2.code, r2.Data)
	}
	// Poll (Argo Rollouts' web metric reads $.data.phase / $.data.decision).
	r = call(t, "GET", s.URL+"/api/v1/verify/"+st.ID, "")
	var polled map[string]any
	_ = json.Unmarshal(r.Data, &polled)
	if r.code != 200 || polled["phase"] != "running" || polled["decision"] != "inconclusive" {
		t.Errorf("poll: %d %v", r.code, polled)
	}
	if r := call(t, "GET", s.URL+"/api/v1/verify/unknown", ""); r.code != 404 {
		t.Errorf("unknown verification: %d", r.code)
	}
	// Without a recorded deployment or a start, identical requests (Argo
	// Rollouts' web provider POSTs every interval) join one verification.
	var ids []string
	for range 2 {
		r := call(t, "POST", s.URL+"/api/v1/verify", `{"service":"cart","version":"v9","baseline":"v8","signals":[{"name":"q","query":"max(q{$selector})"}]}`)
		var st VerifyStatus
		_ = json.Unmarshal(r.Data, &st)
		ids = append(ids, st.ID)
		time.Sleep(20 * time.Millisecond)
	}
	if ids[0] == "" || ids[0] != ids[1] {
		t.Errorf("repeated unrecorded verifications got IDs %v, want one", ids)
	}
	// Requests that cannot be served: 400 naming what is missing.
	for body, want := range map[string]string{
		`{"version":"v2"}`:                                                              "service: missing",
		`{"service":"checkout"}`:                                                        "version: missing",
		`{"service":"cart","version":"v9"}`:                                             "baseline: missing",
		`{"service":"checkout","version":"v2","window":"soon"}`:                         "window",
		`{"service":"checkout","version":"v2","bogus":1}`:                               "unknown field",
		`{"service":"checkout","version":"v2","signals":[{"name":"x","query":"sum("}]}`: "signal x",
	} {
		r := call(t, "POST", s.URL+"/api/v1/verify", body)
		if r.code != 400 || !strings.Contains(r.Error, want) {
			t.Errorf("verify %s: %d %q, want 400 naming %q", body, r.code, r.Error, want)
		}
	}
	// Flagger's webhooks: 200 to go on, non-200 to halt.
	flagger := `{"name":"checkout","namespace":"shop","phase":"Progressing","metadata":{"version":"v2","baseline":"v1","environment":"production"}}`
	for typ, want := range map[string]int{"": 200, "rollout": 200, "confirm-promotion": 412, "rollback": 412} {
		r := call(t, "POST", s.URL+"/api/v1/hooks/verdict?type="+typ, flagger)
		if r.code != want {
			t.Errorf("flagger %q hook: %d %s, want %d", typ, r.code, r.Error, want)
		}
	}
	if r := call(t, "POST", s.URL+"/api/v1/hooks/verdict?type=maybe", flagger); r.code != 400 {
		t.Errorf("unknown hook type: %d", r.code)
	}
	r = call(t, "GET", s.URL+"/api/v1/verdicts?service=checkout", "")
	if r.code != 200 || !strings.Contains(string(r.Data), `"service":"checkout"`) {
		t.Errorf("verdicts: %d %s", r.code, r.Data)
	}
}

func TestRollbackEndpoint(t *testing.T) {
	var mu sync.Mutex
	var got []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Header.Get("Authorization")+" "+string(b))
		mu.Unlock()
	}))
	defer hook.Close()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hookToken := write("hook-token", "spinnaker-secret\n")
	cat := write("catalog.yml", `
defaults: {environment: production, namespace: shop}
services:
  - name: checkout
    rollback:
      webhook: {url: "`+hook.URL+`", bearer_token_file: "`+hookToken+`"}
`)
	cfg := DefaultConfig()
	cfg.Catalog = cat
	authn := testAuthenticator(t, map[string]auth.Scope{"ops": auth.ScopeAdmin, "ci": auth.ScopeDeploy})
	s := newTestServerWith(t, cfg, authn, true)
	r := call(t, "POST", s.URL+"/api/v1/deployments", `{"service":"checkout","environment":"production","version":"v2","previousVersion":"v1"}`, "Authorization", "Bearer ci-token")
	var d Deployment
	_ = json.Unmarshal(r.Data, &d)

	if r := call(t, "POST", s.URL+"/api/v1/deployments/"+d.ID+"/rollback", ""); r.code != 401 {
		t.Errorf("without token: %d", r.code)
	}
	if r := call(t, "POST", s.URL+"/api/v1/deployments/"+d.ID+"/rollback", "", "Authorization", "Bearer wrong"); r.code != 401 {
		t.Errorf("wrong token: %d", r.code)
	}
	if r := call(t, "POST", s.URL+"/api/v1/deployments/"+d.ID+"/rollback", "", "Authorization", "Bearer ci-token"); r.code != 403 {
		t.Errorf("deploy token on the admin route: %d, want 403", r.code)
	}
	r = call(t, "POST", s.URL+"/api/v1/deployments/"+d.ID+"/rollback", "", "Authorization", "Bearer ops-token")
	if r.code != 200 {
		t.Fatalf("rollback: %d %s", r.code, r.Error)
	}
	mu.Lock()
	if len(got) != 1 || !strings.HasPrefix(got[0], "Bearer spinnaker-secret ") || !strings.Contains(got[0], `"rollbackTo":"v1"`) {
		t.Errorf("webhook received %q", got)
	}
	mu.Unlock()
	// The action is recorded with the deployment.
	rec, _ := s.hook.Store().Get(d.ID)
	if len(rec.Actions) != 1 || !rec.Actions[0].OK || rec.Actions[0].Target != hook.URL {
		t.Errorf("actions = %+v", rec.Actions)
	}
	_ = context.Background()
}

// TestRollbackNeedsAuthentication: with authentication off, Vigil never
// acts, even when asked by hand.
func TestRollbackNeedsAuthentication(t *testing.T) {
	s := newTestServer(t, DefaultConfig())
	r := call(t, "POST", s.URL+"/api/v1/deployments", `{"service":"checkout","version":"v2"}`)
	var d Deployment
	_ = json.Unmarshal(r.Data, &d)
	if r := call(t, "POST", s.URL+"/api/v1/deployments/"+d.ID+"/rollback", "", "Authorization", "Bearer x"); r.code != 403 || !strings.Contains(r.Error, "auth.tokens") {
		t.Errorf("rollback with authentication off: %d %s, want 403 naming auth.tokens", r.code, r.Error)
	}
}

// testAuthenticator loads one token per name, whose value is "<name>-token".
func testAuthenticator(t testing.TB, tokens map[string]auth.Scope) *auth.Authenticator {
	t.Helper()
	dir := t.TempDir()
	var cfg auth.Config
	for name, scope := range tokens {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(name+"-token\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.Tokens = append(cfg.Tokens, auth.TokenConfig{Name: name, TokenFile: p, Scopes: []auth.Scope{scope}})
	}
	a := auth.New(nil, nil)
	if err := a.Load(cfg, nil); err != nil {
		t.Fatal(err)
	}
	return a
}

// FuzzVerifyRequests posts arbitrary bodies to the verify endpoint and the
// webhook gate: every answer is a JSON 2xx or 4xx, never a 5xx or a panic.
func FuzzVerifyRequests(f *testing.F) {
	f.Add("/api/v1/verify", []byte(`{"service":"checkout","version":"v2","baseline":"v1"}`))
	f.Add("/api/v1/verify", []byte(`{"service":"checkout","version":"v2","baseline":"v1","signals":[{"name":"x","query":"up{$selector}","max":1}]}`))
	f.Add("/api/v1/hooks/verdict?type=confirm-promotion", []byte(`{"name":"checkout","namespace":"shop","phase":"Progressing","metadata":{"version":"v2","baseline":"v1"}}`))
	f.Add("/api/v1/hooks/verdict", []byte(`{"name":1}`))
	f.Add("/api/v1/verify", []byte(`{"service":"a","version":"b","baseline":"c","window":"-5m"}`))
	s := newTestServer(f, DefaultConfig())
	f.Fuzz(func(t *testing.T, path string, body []byte) {
		if !strings.HasPrefix(path, "/api/v1/verify") && !strings.HasPrefix(path, "/api/v1/hooks/verdict") {
			return
		}
		req := httptest.NewRequest(http.MethodPost, "http://vigil"+"/api/v1/verify", strings.NewReader(string(body)))
		if strings.HasPrefix(path, "/api/v1/hooks/verdict") {
			req = httptest.NewRequest(http.MethodPost, "http://vigil/api/v1/hooks/verdict", strings.NewReader(string(body)))
		}
		rec := httptest.NewRecorder()
		mux := auth.NewMux(nil, nil)
		s.hook.Register(mux)
		mux.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %q: %d %s", path, body, rec.Code, rec.Body)
		}
		var env map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
			t.Fatalf("%s %q: answer is not JSON: %s", path, body, rec.Body)
		}
	})
}

func TestGitHubSignature(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "gh")
	if err := os.WriteFile(secret, []byte("It's a Secret to Everybody\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.GitHubSecretFile = secret
	body, _ := os.ReadFile(filepath.Join("testdata", "github.json"))
	mac := hmac.New(sha256.New, []byte("It's a Secret to Everybody"))
	mac.Write(body)
	good := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	for _, authOn := range []bool{false, true} {
		var authn *auth.Authenticator
		if authOn {
			// GitHub cannot send a bearer token: its signature stands for one.
			authn = testAuthenticator(t, map[string]auth.Scope{"ci": auth.ScopeDeploy, "grafana": auth.ScopeRead})
		}
		s := newTestServerWith(t, cfg, authn, false)
		for sig, want := range map[string]int{"": 401, "sha256=00": 401, "sha1=abc": 401, good: 201} {
			r := call(t, "POST", s.URL+"/api/v1/deployments/github", string(body), "X-GitHub-Event", "deployment_status", "X-Hub-Signature-256", sig)
			if r.code != want && (sig != good || r.code != 200) {
				t.Errorf("auth %v, signature %q: %d %s, want %d", authOn, sig, r.code, r.Error, want)
			}
		}
		if !authOn {
			continue
		}
		// The signature opens the GitHub route only.
		if r := call(t, "POST", s.URL+"/api/v1/deployments", string(body), "X-Hub-Signature-256", good); r.code != 401 {
			t.Errorf("signed body on the generic route: %d, want 401", r.code)
		}
		// A deploy token does not spare a GitHub event its signature.
		if r := call(t, "POST", s.URL+"/api/v1/deployments/github", string(body), "X-GitHub-Event", "deployment_status", "Authorization", "Bearer ci-token"); r.code != 401 {
			t.Errorf("deploy token without signature: %d, want 401", r.code)
		}
	}
	// GitHub's documented example: secret "It's a Secret to Everybody", payload "Hello, World!".
	if !validGitHubSignature([]byte("It's a Secret to Everybody"), []byte("Hello, World!"), "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17") {
		t.Error("GitHub's documented example signature does not verify")
	}
}

func TestVerifyReportsEvaluationErrors(t *testing.T) {
	s := newTestServer(t, DefaultConfig())
	// Parses, but the engine refuses it when run: the status says why.
	start := time.Now().Add(-2 * time.Minute).UTC().Format(time.RFC3339)
	r := call(t, "POST", s.URL+"/api/v1/verify", `{"service":"a","version":"v2","baseline":"v1","start":"`+start+`","signals":[{"name":"bad","query":"label_replace(up{$selector}, \"x\", \"$1\", \"y\", \"(\")"}]}`)
	var st VerifyStatus
	_ = json.Unmarshal(r.Data, &st)
	if r.code/100 != 2 || !strings.Contains(st.Error, "signal bad") {
		t.Errorf("evaluation error not reported: %d %+v", r.code, st)
	}
}
