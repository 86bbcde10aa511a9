package webconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, yaml, err string }{
		{"empty", "", ""},
		{"users and headers", "basic_auth_users:\n  alice: $2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n", ""},
		{"unknown key", "basic_auth_user: {}\n", "basic_auth_user"},
		{"plain password", "basic_auth_users:\n  alice: hunter2\n", "hashedSecret"},
		{"header not allowed", "http_server_config:\n  headers:\n    Server: vigil\n", `"Server" can not be configured`},
		{"missing key file", "tls_server_config:\n  cert_file: a.crt\n", "missing one of key or key_file"},
		{"unreadable cert", "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n", "a.crt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(p)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.TLSEnabled() {
					t.Error("TLS enabled without tls_server_config")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), p) {
				t.Errorf("error %v, want one naming %s and %q", err, p, tc.err)
			}
		})
	}
}
