package main

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/internal/config"
)

// TestWebUIAsksBrowsersForAUser: with authentication on, the UI answers a
// browser that sends nothing with 401 and a Basic challenge (so it asks for
// a user), lets a basic-auth user with the read scope in, and that user may
// read but not act.
func TestWebUIAsksBrowsersForAUser(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("alice-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	web := filepath.Join(t.TempDir(), "web.yml")
	writeFile(t, web, "basic_auth_users:\n  alice: "+string(hash)+"\n")
	s := startSecured(t, func(c *config.Config) {
		c.Web.ConfigFile = web
		c.Auth.Users = []auth.UserConfig{{Name: "alice", Scopes: []auth.Scope{auth.ScopeRead}}}
	})
	s.url = strings.Replace(s.url, "https://", "http://", 1) // a web config without TLS
	get := func(path, user, pw string) (int, http.Header, string) {
		req, err := http.NewRequest("GET", s.url+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, pw)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	for _, path := range []string{"/", "/status", "/graph?g0.expr=up", "/verdicts/x", "/static/style.css"} {
		code, hdr, _ := get(path, "", "")
		if code != http.StatusUnauthorized || !strings.Contains(strings.Join(hdr.Values("WWW-Authenticate"), ","), `Basic realm="vigil"`) {
			t.Errorf("GET %s without credentials: %d %q, want 401 with a Basic challenge", path, code, hdr.Values("WWW-Authenticate"))
		}
		if code, _, _ := get(path, "alice", "wrong"); code != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong password: %d, want 401", path, code)
		}
	}
	code, hdr, body := get("/", "alice", "alice-pw")
	if code != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") || !strings.Contains(body, "<h1>Deployments") {
		t.Errorf("GET / as alice: %d %s\n%.300s", code, hdr.Get("Content-Type"), body)
	}
	req, _ := http.NewRequest("POST", s.url+"/api/v1/deployments", strings.NewReader(`{"service":"a","version":"v2"}`))
	req.SetBasicAuth("alice", "alice-pw")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("alice (read) recording a deployment: %d, want 403", resp.StatusCode)
	}
}
