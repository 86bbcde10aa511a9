package config

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const examplePath = "../../docs/vigil.example.yml"

// TestExampleIsTheDefaults: docs/vigil.example.yml loads, equals the built-in
// defaults, and names every key the defaults have — so the documented file
// cannot drift from the code.
func TestExampleIsTheDefaults(t *testing.T) {
	got, err := LoadFile(examplePath)
	if err != nil {
		t.Fatalf("load %s: %v", examplePath, err)
	}
	want := DefaultConfig()
	// The one default that depends on the machine (4 per CPU, at least 8).
	got.Receivers.Limits.MaxConcurrentRequests = want.Receivers.Limits.MaxConcurrentRequests
	if diff := cmp.Diff(want.String(), got.String()); diff != "" {
		t.Errorf("%s differs from DefaultConfig() (-defaults +example):\n%s", examplePath, diff)
	}

	b, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	exampleKeys := keyPaths(t, b)
	defaultKeys := keyPaths(t, []byte(want.String()))
	var missing []string
	for _, k := range defaultKeys {
		if !slices.Contains(exampleKeys, k) {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%s does not document these keys (add them with their default and a comment):\n  %s", examplePath, strings.Join(missing, "\n  "))
	}
}

// keyPaths lists the dotted paths of every mapping key in a YAML document.
func keyPaths(t *testing.T, b []byte) []string {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, prefix)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := n.Content[i].Value
				if prefix != "" {
					p = prefix + "." + p
				}
				out = append(out, p)
				walk(n.Content[i+1], p)
			}
		}
	}
	walk(&doc, "")
	return out
}

// TestLoadGolden loads a config that sets every section to something other
// than its default and compares the effective configuration, as
// /api/v1/status/config shows it (secrets hidden), with a golden file.
func TestLoadGolden(t *testing.T) {
	for _, name := range []string{"full"} {
		t.Run(name, func(t *testing.T) {
			cfg, err := LoadFile(filepath.Join("testdata", name+".yml"))
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.String()
			golden := filepath.Join("testdata", name+".golden.yml")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/config -run TestLoadGolden -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("effective config differs from %s (-want +got):\n%s", golden, diff)
			}
			for _, secret := range []string{"hunter2", "s3cr3t-header"} {
				if strings.Contains(got, secret) {
					t.Errorf("the rendered config shows the secret %q", secret)
				}
			}
		})
	}
}
