package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAuthConfig: the auth section and the keys it replaced, with the
// error each mistake gets.
func TestAuthConfig(t *testing.T) {
	tests := []struct {
		name, yaml string
		err        []string // substrings of the error; none for valid
	}{
		{"defaults", ``, nil},
		{"the four scopes", `
auth:
  tokens:
    - {name: agents,  token_file: /etc/vigil/agents.token,  scopes: [write]}
    - {name: grafana, token_file: /etc/vigil/grafana.token, scopes: [read]}
    - {name: ci,      token_file: /etc/vigil/ci.token,      scopes: [deploy]}
    - {name: ops,     token_file: /etc/vigil/ops.token,     scopes: [admin]}
`, nil},
		{"unknown scope", "auth:\n  tokens:\n    - {name: a, token_file: /x, scopes: [root]}\n", []string{"auth.tokens[0] (a): scopes: unknown scope \"root\"", "write, read, deploy, admin"}},
		{"no scope", "auth:\n  tokens:\n    - {name: a, token_file: /x}\n", []string{"auth.tokens[0] (a): scopes is empty"}},
		{"name twice", "auth:\n  tokens:\n    - {name: a, token_file: /x, scopes: [read]}\n    - {name: a, token_file: /y, scopes: [write]}\n", []string{"auth.tokens[1]: name \"a\" is used twice"}},
		{"no name", "auth:\n  tokens:\n    - {token_file: /x, scopes: [read]}\n", []string{"auth.tokens[0]: name is missing"}},
		{"no file", "auth:\n  tokens:\n    - {name: a, scopes: [read]}\n", []string{"auth.tokens[0] (a): token_file is missing"}},
		{"unknown key", "auth:\n  tokens:\n    - {name: a, token: abc, scopes: [read]}\n", []string{"token"}},
		{"user without scopes", "auth:\n  users:\n    - {name: alice}\n", []string{"auth.users[0] (alice): scopes is empty"}},
		{"admin_token_file is refused", "web:\n  admin_token_file: /etc/vigil/admin.token\n", []string{"web.admin_token_file is no longer supported", "token_file: /etc/vigil/admin.token, scopes: [admin]", "docs/security.md"}},
		{"bearer_token_file is refused", "deploy:\n  bearer_token_file: /etc/vigil/rollback.token\n", []string{"deploy.bearer_token_file is no longer supported", "token_file: /etc/vigil/rollback.token, scopes: [admin]"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "vigil.yml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadFile(p)
			if len(tc.err) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(tc.yaml, "tokens") && !cfg.Auth.Enabled() {
					t.Error("tokens configured but auth is not enabled")
				}
				return
			}
			if err == nil {
				t.Fatalf("loaded; want an error naming %q", tc.err)
			}
			for _, want := range tc.err {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}
