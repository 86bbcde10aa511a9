package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/internal/peers"
)

// TestGenAllCLI: `vigil gen all` writes rules that Debian's promtool checks
// and whose generated unit tests pass, and dashboards with provisioning; a
// bad catalog exits 1 naming the problem.
func TestGenAllCLI(t *testing.T) {
	out := t.TempDir()
	stdout, stderr, code := runVigil(t, "gen", "all", "--catalog.file", "../../catalog/testdata/catalog.yml", "--output-dir", out, "-o", "json")
	if code != 0 {
		t.Fatalf("gen all: exit %d: %s", code, stderr)
	}
	var listing struct {
		Files []writtenFile `json:"files"`
	}
	if err := json.Unmarshal([]byte(stdout), &listing); err != nil {
		t.Fatalf("-o json output %q: %v", stdout, err)
	}
	kinds := map[string]int{}
	for _, f := range listing.Files {
		kinds[f.Kind]++
		if _, err := os.Stat(f.Path); err != nil {
			t.Errorf("listed file: %v", err)
		}
	}
	if kinds["rules"] != 2 || kinds["rule tests"] != 2 || kinds["dashboard"] < 4 || kinds["datasource"] != 1 {
		t.Errorf("files by kind = %v", kinds)
	}

	promtool := peers.Binary(t, "promtool")
	rules, _ := filepath.Glob(filepath.Join(out, "rules", "*.rules.yml"))
	tests, _ := filepath.Glob(filepath.Join(out, "rules", "*.test.yml"))
	for _, args := range [][]string{append([]string{"check", "rules"}, rules...), append([]string{"test", "rules"}, tests...)} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = filepath.Join(out, "rules")
		if b, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(b), "SUCCESS") {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args[:2], " "), err, b)
		}
	}

	bad := filepath.Join(t.TempDir(), "catalog.yml")
	writeFile(t, bad, "services:\n  - name: x\n    slos:\n      availability: {objective: 120}\n")
	_, stderr, code = runVigil(t, "gen", "rules", "--catalog.file", bad, "--output-dir", t.TempDir())
	if code != 1 || !strings.Contains(stderr, "objective") {
		t.Errorf("gen rules with a bad catalog: exit %d, stderr %q", code, stderr)
	}
}
