package auth

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/vigilhq/vigil/internal/webconfig"
)

// setup loads tokens named after their scope ("<scope>-secret") and a
// web config with basic-auth users alice (scoped read) and bob (unscoped).
func setup(t testing.TB) (*Authenticator, *prometheus.Registry) {
	t.Helper()
	dir := t.TempDir()
	var cfg Config
	for _, s := range Scopes {
		p := filepath.Join(dir, string(s))
		if err := os.WriteFile(p, []byte("  "+string(s)+"-secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.Tokens = append(cfg.Tokens, TokenConfig{Name: string(s) + "-client", TokenFile: p, Scopes: []Scope{s}})
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	web := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(web, []byte("basic_auth_users:\n  alice: "+string(hash)+"\n  bob: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wc, err := webconfig.Load(web)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Users = []UserConfig{{Name: "alice", Scopes: []Scope{ScopeRead}}}
	reg := prometheus.NewRegistry()
	a := New(nil, reg)
	if err := a.Load(cfg, wc); err != nil {
		t.Fatal(err)
	}
	return a, reg
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestRequire(t *testing.T) {
	a, reg := setup(t)
	var seen Principal
	h := a.Require(ScopeDeploy, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = FromContext(r.Context())
	}))
	tests := []struct {
		name, header string
		code         int
		who          string
		reason       Reason
	}{
		{"no credential", "", 401, "", ReasonMissing},
		{"right token", "Bearer deploy-secret", 200, "deploy-client", ""},
		{"scheme is case-insensitive", "bearer deploy-secret", 200, "deploy-client", ""},
		{"token of another scope", "Bearer read-secret", 403, "", ReasonScope},
		{"unknown token", "Bearer deploy-secret2", 401, "", ReasonInvalid},
		{"prefix of a token", "Bearer deploy", 401, "", ReasonInvalid},
		{"empty bearer", "Bearer ", 401, "", ReasonInvalid},
		{"other scheme", "Token deploy-secret", 401, "", ReasonScheme},
		{"scoped user, other scope", basic("alice", "pw"), 403, "", ReasonScope},
		{"unscoped user has every scope", basic("bob", "pw"), 200, "bob", ""},
		{"wrong password", basic("bob", "nope"), 401, "", ReasonInvalid},
		{"unknown user", basic("carol", "pw"), 401, "", ReasonInvalid},
		{"garbage basic", "Basic !!!", 401, "", ReasonInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen = Principal{}
			var before float64
			if tc.reason != "" {
				before = testutil.ToFloat64(a.unauthorized.WithLabelValues(string(tc.reason)))
			}
			req := httptest.NewRequest("POST", "/api/v1/verify", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.code {
				t.Fatalf("%d %s, want %d", rec.Code, rec.Body, tc.code)
			}
			if seen.Name != tc.who {
				t.Errorf("principal %q, want %q", seen.Name, tc.who)
			}
			if tc.code == 401 && !strings.Contains(rec.Header().Values("WWW-Authenticate")[0], "Bearer") {
				t.Errorf("401 without a Bearer challenge: %v", rec.Header())
			}
			if tc.reason != "" && testutil.ToFloat64(a.unauthorized.WithLabelValues(string(tc.reason))) != before+1 {
				t.Errorf("refusal not counted under reason %q", tc.reason)
			}
			if strings.Contains(rec.Body.String(), "secret") {
				t.Errorf("the answer shows a token: %s", rec.Body)
			}
		})
	}
	if n, err := testutil.GatherAndCount(reg, "vigil_http_requests_unauthorized_total"); err != nil || n != len(reasons) {
		t.Errorf("unauthorized_total series: %d %v, want one per reason", n, err)
	}
}

func TestRequireWhenOff(t *testing.T) {
	for name, a := range map[string]*Authenticator{"nil": nil, "not loaded": New(nil, nil)} {
		var seen Principal
		h := a.Require(ScopeAdmin, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen, _ = FromContext(r.Context()) }))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/-/reload", nil))
		if rec.Code != 200 || seen.Name != Anonymous.Name || !seen.Has(ScopeAdmin) {
			t.Errorf("%s: %d as %+v, want anonymous with every scope", name, rec.Code, seen)
		}
	}
}

type fakeVerifier struct{ present, ok bool }

func (f fakeVerifier) Verify(*http.Request) (Principal, bool, bool) {
	return Principal{Name: "github", Scopes: []Scope{ScopeDeploy}}, f.present, f.ok
}

func TestRouteOptions(t *testing.T) {
	a, _ := setup(t)
	var gotQuery string
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { gotQuery = r.URL.RawQuery })
	tests := []struct {
		name   string
		opts   []RouteOption
		target string
		code   int
	}{
		{"query token where allowed", []RouteOption{QueryToken()}, "/hook?type=rollout&access_token=deploy-secret", 200},
		{"query token of another scope", []RouteOption{QueryToken()}, "/hook?access_token=read-secret", 403},
		{"query token elsewhere", nil, "/hook?access_token=deploy-secret", 401},
		{"valid signature", []RouteOption{WithVerifier(fakeVerifier{true, true})}, "/gh", 200},
		{"bad signature", []RouteOption{WithVerifier(fakeVerifier{true, false})}, "/gh", 401},
		{"no signature", []RouteOption{WithVerifier(fakeVerifier{false, false})}, "/gh", 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gotQuery = ""
			rec := httptest.NewRecorder()
			a.Require(ScopeDeploy, next, tc.opts...).ServeHTTP(rec, httptest.NewRequest("POST", tc.target, nil))
			if rec.Code != tc.code {
				t.Fatalf("%d %s, want %d", rec.Code, rec.Body, tc.code)
			}
			if strings.Contains(gotQuery, "access_token") {
				t.Errorf("the handler saw the token in the URL: %q", gotQuery)
			}
		})
	}
	if gotQuery != "" {
		t.Errorf("unexpected %q", gotQuery)
	}
}

func TestUnaryServerInterceptor(t *testing.T) {
	a, _ := setup(t)
	icpt := a.UnaryServerInterceptor(ScopeWrite)
	for _, tc := range []struct {
		name, md string
		code     codes.Code
	}{
		{"no metadata", "", codes.Unauthenticated},
		{"write token", "Bearer write-secret", codes.OK},
		{"read token", "Bearer read-secret", codes.PermissionDenied},
		{"unknown token", "Bearer nope", codes.Unauthenticated},
		{"basic user with every scope", basic("bob", "pw"), codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.md != "" {
				ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", tc.md))
			}
			var who string
			_, err := icpt(ctx, nil, &grpc.UnaryServerInfo{}, func(ctx context.Context, _ any) (any, error) {
				p, _ := FromContext(ctx)
				who = p.Name
				return nil, nil
			})
			if status.Code(err) != tc.code {
				t.Fatalf("%v, want %s", err, tc.code)
			}
			if tc.code == codes.OK && who == "" {
				t.Error("no principal in the handler's context")
			}
		})
	}
}

func TestLoadKeepsTheOldTokensOnError(t *testing.T) {
	a, _ := setup(t)
	err := a.Load(Config{Tokens: []TokenConfig{{Name: "x", TokenFile: "/nonexistent", Scopes: []Scope{ScopeRead}}}}, nil)
	if err == nil || !strings.Contains(err.Error(), "auth.tokens[0] (x): token_file") {
		t.Fatalf("Load with a missing file: %v", err)
	}
	if p, r := a.authenticate("Bearer read-secret"); r != "" || p.Name != "read-client" {
		t.Errorf("after a failed Load: %v %q, want the old tokens in force", p, r)
	}
	dir := t.TempDir()
	same := filepath.Join(dir, "t")
	_ = os.WriteFile(same, []byte("x"), 0o600)
	err = a.Load(Config{Tokens: []TokenConfig{{Name: "a", TokenFile: same, Scopes: []Scope{ScopeRead}}, {Name: "b", TokenFile: same, Scopes: []Scope{ScopeAdmin}}}}, nil)
	if err == nil || !strings.Contains(err.Error(), `the same token as "a"`) {
		t.Errorf("two names for one token: %v", err)
	}
}

func TestMuxRecordsEveryRoute(t *testing.T) {
	m := NewMux(nil, nil)
	m.Handle("GET /a", ScopeRead, http.NotFoundHandler())
	m.HandleFunc("POST /b", ScopeDeploy, func(http.ResponseWriter, *http.Request) {}, QueryToken())
	got := m.Routes()
	if len(got) != 2 || got[0].Pattern != "GET /a" || got[0].Scope != ScopeRead || !got[1].QueryToken || got[1].Scope != ScopeDeploy {
		t.Errorf("routes = %+v", got)
	}
}

func TestPlaceholderTokensAreRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ops-token")
	if err := os.WriteFile(p, []byte("REPLACE-ME-ops-admin-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Config{Tokens: []TokenConfig{{Name: "ops", TokenFile: p, Scopes: []Scope{ScopeAdmin}}}}.CheckFiles()
	if err == nil || !strings.Contains(err.Error(), "placeholder") {
		t.Errorf("placeholder token: %v, want it refused", err)
	}
}

// FuzzAuthorization: no Authorization header or access_token, however
// malformed, panics or authenticates without being a configured credential.
func FuzzAuthorization(f *testing.F) {
	for _, s := range []string{"", "Bearer write-secret", "bearer  write-secret ", "Basic " + base64.StdEncoding.EncodeToString([]byte("bob:pw")),
		"Basic Ym9i", "Basic !!", "Bearer", "Negotiate abc", "Bearer \x00\xff", strings.Repeat("B", 10000)} {
		f.Add(s, "")
		f.Add("", s)
	}
	a, _ := setup(f)
	valid := map[string]bool{"Bearer write-secret": true, "bearer write-secret": true}
	h := a.Require(ScopeWrite, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), QueryToken())
	f.Fuzz(func(t *testing.T, header, queryToken string) {
		req := httptest.NewRequest("POST", "/v1/metrics", nil)
		req.Header.Set("Authorization", header)
		if queryToken != "" {
			req.URL.RawQuery = "access_token=" + url.QueryEscape(queryToken)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case 200:
			trimmed := strings.TrimSpace(header)
			ok := valid[trimmed] || strings.HasPrefix(strings.ToLower(trimmed), "basic ") ||
				(header == "" && queryToken == "write-secret") || strings.HasSuffix(trimmed, " write-secret")
			if !ok {
				t.Errorf("authenticated %q / access_token %q", header, queryToken)
			}
		case 401, 403:
		default:
			t.Errorf("%q: answer %d", header, rec.Code)
		}
	})
}
