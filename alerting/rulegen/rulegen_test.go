package rulegen

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/internal/peers"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func generate(t *testing.T) []File {
	t.Helper()
	cat, err := catalog.Load("../../catalog/testdata/catalog.yml")
	if err != nil {
		t.Fatal(err)
	}
	files, err := Generate(cat, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestGolden: the generated files are the ones in testdata/golden.
func TestGolden(t *testing.T) {
	for _, f := range generate(t) {
		path := filepath.Join("testdata", "golden", f.Name)
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, f.Content, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update)", err)
		}
		if string(want) != string(f.Content) {
			t.Errorf("%s differs from the golden file; run go test ./alerting/rulegen -update and review the diff", f.Name)
		}
	}
}

// TestPromtool: Debian's promtool accepts every generated rule file and
// passes every generated unit test.
func TestPromtool(t *testing.T) {
	promtool := peers.Binary(t, "promtool")
	dir := t.TempDir()
	var rules, tests []string
	for _, f := range generate(t) {
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Content, 0o644); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f.Name, ".test.yml") {
			tests = append(tests, f.Name)
		} else {
			rules = append(rules, f.Name)
		}
	}
	run := func(args ...string) {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run(append([]string{"check", "rules"}, rules...)...)
	run(append([]string{"test", "rules"}, tests...)...)
}
