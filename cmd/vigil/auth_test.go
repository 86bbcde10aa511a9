package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/internal/config"
	"github.com/vigilhq/vigil/internal/peers"
)

// securedServer is an in-process `vigil serve` with one token per scope.
type securedServer struct {
	url    string
	cfg    config.Config
	tokens map[auth.Scope]string // scope -> token value
	routes []auth.Route
	client *http.Client
}

// routeHookMu serialises the tests that use testHookRoutes.
var routeHookMu sync.Mutex

// startSecured runs serve in this process with auth.tokens (one token per
// scope, named after it) and whatever edit changes in the config.
func startSecured(t *testing.T, edit func(*config.Config)) *securedServer {
	t.Helper()
	dir := t.TempDir()
	s := &securedServer{tokens: map[auth.Scope]string{}, client: http.DefaultClient}
	cfg := config.DefaultConfig()
	cfg.Web.ListenAddress = peers.FreeAddr(t)
	cfg.Receivers.OTLP.GRPC.ListenAddress = peers.FreeAddr(t)
	cfg.Receivers.OTLP.HTTP.ListenAddress = peers.FreeAddr(t)
	cfg.Storage.Path = filepath.Join(dir, "data")
	for _, sc := range auth.Scopes {
		v := "tok-" + string(sc) + "-" + strings.Repeat("x", 20)
		p := filepath.Join(dir, string(sc)+".token")
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		s.tokens[sc] = v
		cfg.Auth.Tokens = append(cfg.Auth.Tokens, auth.TokenConfig{Name: string(sc) + "-client", TokenFile: p, Scopes: []auth.Scope{sc}})
	}
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s.cfg = cfg
	s.url = "http://" + cfg.Web.ListenAddress
	if cfg.Web.ConfigFile != "" {
		s.url = "https://" + cfg.Web.ListenAddress
	}

	routeHookMu.Lock()
	got := make(chan []auth.Route, 1)
	testHookRoutes = func(r []auth.Route) { got <- r }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() {
		done <- serve(ctx, cfg, logger, map[string]string{}, func() (config.Config, error) { return cfg, nil })
	}()
	select {
	case s.routes = <-got:
	case err := <-done:
		routeHookMu.Unlock()
		cancel()
		t.Fatalf("serve: %v", err)
	case <-time.After(60 * time.Second):
		routeHookMu.Unlock()
		cancel()
		t.Fatal("serve did not become ready in 60s")
	}
	testHookRoutes = nil
	routeHookMu.Unlock()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return s
}

// routePolicy is the security policy under test: every route Vigil
// registers must have a row here, with the scope it must require. A new
// route without a row fails TestEveryRouteNeedsItsScope.
var routePolicy = map[string]struct {
	scope  auth.Scope
	method string // for patterns without one
	path   string // when the pattern is not a path to call as is
}{
	"/-/healthy":                             {scope: auth.ScopeNone, method: "GET"},
	"/-/ready":                               {scope: auth.ScopeNone, method: "GET"},
	"GET /metrics":                           {scope: auth.ScopeRead},
	"GET /api/v1/query":                      {scope: auth.ScopeRead},
	"POST /api/v1/query":                     {scope: auth.ScopeRead},
	"GET /api/v1/query_range":                {scope: auth.ScopeRead},
	"POST /api/v1/query_range":               {scope: auth.ScopeRead},
	"GET /api/v1/query_exemplars":            {scope: auth.ScopeRead},
	"POST /api/v1/query_exemplars":           {scope: auth.ScopeRead},
	"GET /api/v1/format_query":               {scope: auth.ScopeRead},
	"POST /api/v1/format_query":              {scope: auth.ScopeRead},
	"GET /api/v1/series":                     {scope: auth.ScopeRead},
	"POST /api/v1/series":                    {scope: auth.ScopeRead},
	"GET /api/v1/labels":                     {scope: auth.ScopeRead},
	"POST /api/v1/labels":                    {scope: auth.ScopeRead},
	"GET /api/v1/label/{name}/values":        {scope: auth.ScopeRead},
	"GET /api/v1/metadata":                   {scope: auth.ScopeRead},
	"GET /api/v1/status/buildinfo":           {scope: auth.ScopeRead},
	"GET /api/v1/status/runtimeinfo":         {scope: auth.ScopeRead},
	"GET /api/v1/status/flags":               {scope: auth.ScopeRead},
	"GET /api/v1/status/config":              {scope: auth.ScopeAdmin},
	"GET /api/v1/status/tsdb":                {scope: auth.ScopeRead},
	"GET /api/v1/rules":                      {scope: auth.ScopeRead},
	"GET /api/v1/alerts":                     {scope: auth.ScopeRead},
	"GET /api/v1/alertmanagers":              {scope: auth.ScopeRead},
	"GET /api/v1/logs/recent":                {scope: auth.ScopeRead},
	"GET /api/v1/traces/recent":              {scope: auth.ScopeRead},
	"GET /api/v1/deployments":                {scope: auth.ScopeRead},
	"GET /api/v1/deployments/{id}":           {scope: auth.ScopeRead},
	"GET /api/v1/verdicts":                   {scope: auth.ScopeRead},
	"GET /api/v1/verdicts/{id}":              {scope: auth.ScopeRead},
	"GET /{$}":                               {scope: auth.ScopeRead, path: "/"},
	"GET /status":                            {scope: auth.ScopeRead},
	"GET /verdicts/{id}":                     {scope: auth.ScopeRead},
	"GET /graph":                             {scope: auth.ScopeRead, path: "/graph?g0.expr=up"},
	"GET /static/":                           {scope: auth.ScopeRead, path: "/static/style.css"},
	"GET /api/v1/backtest":                   {scope: auth.ScopeRead},
	"POST /api/v1/backtest":                  {scope: auth.ScopeRead},
	"POST /api/v1/write":                     {scope: auth.ScopeWrite},
	"POST /api/v1/evidence":                  {scope: auth.ScopeWrite},
	"/otlp/v1/":                              {scope: auth.ScopeWrite, method: "POST", path: "/otlp/v1/metrics"},
	"/api/v1/otlp/v1/":                       {scope: auth.ScopeWrite, method: "POST", path: "/api/v1/otlp/v1/metrics"},
	"/loki/api/v1/push":                      {scope: auth.ScopeWrite, method: "POST"},
	"POST /api/v1/deployments":               {scope: auth.ScopeDeploy},
	"POST /api/v1/deployments/{format}":      {scope: auth.ScopeDeploy, path: "/api/v1/deployments/spinnaker"},
	"POST /api/v1/deployments/github":        {scope: auth.ScopeDeploy},
	"POST /api/v1/deployments/flagger":       {scope: auth.ScopeDeploy},
	"POST /api/v1/verify":                    {scope: auth.ScopeDeploy},
	"GET /api/v1/verify/{id}":                {scope: auth.ScopeDeploy},
	"POST /api/v1/hooks/verdict":             {scope: auth.ScopeDeploy},
	"POST /api/v1/deployments/{id}/rollback": {scope: auth.ScopeAdmin},
	"/-/reload":                              {scope: auth.ScopeAdmin, method: "POST"},
	"/debug/pprof/":                          {scope: auth.ScopeAdmin, method: "GET"},
	"/debug/pprof/cmdline":                   {scope: auth.ScopeAdmin, method: "GET"},
	"/debug/pprof/profile":                   {scope: auth.ScopeAdmin, method: "GET", path: "/debug/pprof/profile?seconds=1"},
	"/debug/pprof/symbol":                    {scope: auth.ScopeAdmin, method: "GET"},
	"/debug/pprof/trace":                     {scope: auth.ScopeAdmin, method: "GET", path: "/debug/pprof/trace?seconds=1"},
}

var wildcard = regexp.MustCompile(`\{[^}]+\}`)

// TestEveryRouteNeedsItsScope calls every registered route with no token,
// with a token of each other scope and with a token of its scope: 401 (with
// WWW-Authenticate), 403, and through to the handler.
func TestEveryRouteNeedsItsScope(t *testing.T) {
	// POST /api/v1/evidence also wants its writer in
	// ingest.accept_derived_series_from (403 otherwise, see
	// TestStoreTakesDerivedSeriesOnlyFromCollectors).
	s := startSecured(t, func(c *config.Config) { c.Ingest.AcceptDerivedSeriesFrom = []string{"write-client"} })
	registered := map[string]bool{}
	for _, rt := range s.routes {
		registered[rt.Pattern] = true
		want, ok := routePolicy[rt.Pattern]
		if !ok {
			t.Errorf("route %q (scope %q) has no row in routePolicy: classify it", rt.Pattern, rt.Scope)
			continue
		}
		if rt.Scope != want.scope {
			t.Errorf("route %q requires scope %q, the policy says %q", rt.Pattern, rt.Scope, want.scope)
		}
	}
	for p := range routePolicy {
		if !registered[p] {
			t.Errorf("routePolicy row %q matches no registered route", p)
		}
	}
	for _, rt := range s.routes {
		want, ok := routePolicy[rt.Pattern]
		if !ok {
			continue
		}
		method, path, hasMethod := strings.Cut(rt.Pattern, " ")
		if !hasMethod {
			method, path = want.method, rt.Pattern
		}
		if want.path != "" {
			path = want.path
		}
		path = wildcard.ReplaceAllString(path, "x")
		t.Run(rt.Pattern, func(t *testing.T) {
			code, hdr, _ := s.do(t, method, path, "")
			if rt.Scope == auth.ScopeNone {
				if code != http.StatusOK {
					t.Errorf("probe without token: %d, want 200", code)
				}
				return
			}
			if code != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("no token: %d (WWW-Authenticate %q), want 401 with a Bearer challenge", code, hdr.Get("WWW-Authenticate"))
			}
			if code, _, _ := s.do(t, method, path, "not-a-token"); code != http.StatusUnauthorized {
				t.Errorf("unknown token: %d, want 401", code)
			}
			for _, other := range auth.Scopes {
				if other == rt.Scope {
					continue
				}
				if code, _, body := s.do(t, method, path, s.tokens[other]); code != http.StatusForbidden {
					t.Errorf("token of scope %s: %d %s, want 403", other, code, body)
				}
			}
			code, _, body := s.do(t, method, path, s.tokens[rt.Scope])
			if code == http.StatusUnauthorized || code == http.StatusForbidden || code >= 500 {
				t.Errorf("token of scope %s: %d %s, want the handler's answer", rt.Scope, code, body)
			}
		})
	}

	// Flagger cannot send a header: its two routes take ?access_token=, and
	// only they do.
	for _, tc := range []struct {
		path  string
		token auth.Scope
		want  func(int) bool
	}{
		{"/api/v1/hooks/verdict?type=rollout&access_token=", auth.ScopeDeploy, func(c int) bool { return c != 401 && c != 403 }},
		{"/api/v1/deployments/flagger?access_token=", auth.ScopeDeploy, func(c int) bool { return c != 401 && c != 403 }},
		{"/api/v1/hooks/verdict?access_token=", auth.ScopeRead, func(c int) bool { return c == 403 }},
		{"/api/v1/verify?access_token=", auth.ScopeDeploy, func(c int) bool { return c == 401 }},
		{"/api/v1/deployments?access_token=", auth.ScopeDeploy, func(c int) bool { return c == 401 }},
		{"/api/v1/deployments/x/rollback?access_token=", auth.ScopeAdmin, func(c int) bool { return c == 401 }},
	} {
		if code, _, body := s.do(t, "POST", tc.path+s.tokens[tc.token], ""); !tc.want(code) {
			t.Errorf("POST %s<%s token>: %d %s", tc.path, tc.token, code, body)
		}
	}

	// The configuration shows no token, and the refusals were counted by reason.
	_, _, cfgBody := s.do(t, "GET", "/api/v1/status/config", s.tokens[auth.ScopeAdmin])
	_, _, metrics := s.do(t, "GET", "/metrics", s.tokens[auth.ScopeRead])
	for _, v := range s.tokens {
		if strings.Contains(cfgBody, v) || strings.Contains(metrics, v) {
			t.Errorf("a token value is shown by /api/v1/status/config or /metrics")
		}
	}
	for _, reason := range []string{"missing", "invalid", "scope"} {
		if !regexp.MustCompile(`vigil_http_requests_unauthorized_total\{reason="` + reason + `"\} [1-9]`).MatchString(metrics) {
			t.Errorf("vigil_http_requests_unauthorized_total{reason=%q} did not count:\n%s", reason, grepLines(metrics, "unauthorized"))
		}
	}
}

func (s *securedServer) do(t *testing.T, method, path, token string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Header, string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestTokensAreReadAgainOnReload: rewriting a token file and reloading
// (POST /-/reload with an admin token) retires the old token; a reload that
// would authenticate nobody is refused and changes nothing.
func TestTokensAreReadAgainOnReload(t *testing.T) {
	s := startSecured(t, nil)
	readFile := s.cfg.Auth.Tokens[1].TokenFile // the read token
	if err := os.WriteFile(readFile, []byte("rotated-read-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := s.do(t, "GET", "/api/v1/labels", "rotated-read-token"); code != 401 {
		t.Errorf("new token before the reload: %d, want 401", code)
	}
	if code, _, body := s.do(t, "POST", "/-/reload", s.tokens[auth.ScopeAdmin]); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	if code, _, _ := s.do(t, "GET", "/api/v1/labels", "rotated-read-token"); code != 200 {
		t.Errorf("new token after the reload: %d, want 200", code)
	}
	if code, _, _ := s.do(t, "GET", "/api/v1/labels", s.tokens[auth.ScopeRead]); code != 401 {
		t.Errorf("old token after the reload: %d, want 401", code)
	}
	// A token file emptied by mistake: the reload fails, the tokens in force stay.
	if err := os.WriteFile(readFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, body := s.do(t, "POST", "/-/reload", s.tokens[auth.ScopeAdmin]); code != 500 || !strings.Contains(body, "is empty") {
		t.Errorf("reload with an empty token file: %d %s, want 500 naming it", code, body)
	}
	if code, _, _ := s.do(t, "GET", "/api/v1/labels", "rotated-read-token"); code != 200 {
		t.Errorf("token after a failed reload: %d, want 200", code)
	}
}

// TestProbesAnswerWhenConnectionsAreExhausted: with every one of
// web.max_connections held by a slow client, /-/healthy and /-/ready still
// answer, and anything else gets 503 at once instead of waiting.
func TestProbesAnswerWhenConnectionsAreExhausted(t *testing.T) {
	s := startSecured(t, func(c *config.Config) { c.Web.MaxConnections = 4 })
	var held []net.Conn
	for range 4 {
		c, err := net.Dial("tcp", s.cfg.Web.ListenAddress)
		if err != nil {
			t.Fatal(err)
		}
		// A request that never finishes its headers.
		if _, err := c.Write([]byte("GET /api/v1/labels HTTP/1.1\r\nHost: vigil\r\n")); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	for _, p := range []string{"/-/healthy", "/-/ready"} {
		resp, err := fresh.Get(s.url + p)
		if err != nil {
			t.Fatalf("%s with every connection taken: %v", p, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s with every connection taken: %d, want 200", p, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest("GET", s.url+"/api/v1/labels", nil)
	req.Header.Set("Authorization", "Bearer "+s.tokens[auth.ScopeRead])
	resp, err := fresh.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("API call with every connection taken: %d, want 503 with Retry-After", resp.StatusCode)
	}
	// The slow clients go away: the API is served again.
	for _, c := range held {
		c.Close()
	}
	held = nil
	var last string
	eventuallyOK(t, 10*time.Second, "the API after the slow clients left", func() bool {
		resp, err := fresh.Do(req)
		if err != nil {
			last = err.Error()
			return false
		}
		resp.Body.Close()
		last = resp.Status
		return resp.StatusCode == 200
	}, &last)
	_, _, metrics := s.do(t, "GET", "/metrics", s.tokens[auth.ScopeRead])
	if !regexp.MustCompile(`vigil_http_probe_only_connections_total [1-9]`).MatchString(metrics) {
		t.Errorf("probe-only connections not counted:\n%s", grepLines(metrics, "probe_only"))
	}
}
