package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfigMatcherWarnings: `vigil check config` warns about each
// catalog matcher on a label the span or log metrics never carry with the
// configured dimensions, and fails on a catalog that does not load.
func TestCheckConfigMatcherWarnings(t *testing.T) {
	dir := t.TempDir()
	cat := filepath.Join(dir, "catalog.yml")
	if err := os.WriteFile(cat, []byte("services:\n  - name: cart\n    environment: production\n    matchers: 'cluster=\"eu-1\",namespace=\"shop\"'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, config string
		code         int
		want, not    []string
	}{
		{"no dimensions", "deploy:\n  catalog: " + cat + "\n", 0,
			[]string{`WARNING: catalog service cart (production): matcher on "cluster": span metrics have no such label`, `matcher on "cluster": log_records_total has no such label, so its log signal and panels count the records of every cluster`, "SUCCESS"},
			[]string{`"namespace"`}},
		{"span dimension", "span_metrics:\n  dimensions: [cluster]\ndeploy:\n  catalog: " + cat + "\n", 0,
			[]string{"log_records_total has no such label", "SUCCESS"}, []string{"span metrics have no such label"}},
		{"span and log dimensions", "span_metrics:\n  dimensions: [cluster]\nlog_metrics:\n  dimensions: [cluster]\ndeploy:\n  catalog: " + cat + "\n", 0,
			[]string{"SUCCESS"}, []string{"WARNING"}},
		{"no catalog", "log_metrics:\n  dimensions: [k8s.cluster.name]\n", 0, []string{"SUCCESS"}, []string{"WARNING"}},
		{"catalog missing", "deploy:\n  catalog: " + filepath.Join(dir, "nope.yml") + "\n", exitFailure, []string{"FAILED: deploy.catalog: read catalog"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yml")
			if err := os.WriteFile(p, []byte(tc.config), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			code := run([]string{"check", "config", p}, &stdout, &stderr)
			out := stdout.String()
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tc.code, out, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
		})
	}
}
