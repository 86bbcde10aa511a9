package main

import (
	"bytes"
	"flag"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite docs/command-line.md")

// TestCommandLineDocIsCurrent: docs/command-line.md is what the command line
// says about itself. Refresh with `make docs` (go test ./cmd/vigil -run
// TestCommandLineDocIsCurrent -update-docs).
func TestCommandLineDocIsCurrent(t *testing.T) {
	const path = "../../docs/command-line.md"
	var got bytes.Buffer
	if code := run([]string{"write-documentation"}, &got, os.Stderr); code != 0 {
		t.Fatalf("vigil write-documentation: exit %d", code)
	}
	if *updateDocs {
		if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run make docs)", err)
	}
	if diff := cmp.Diff(string(want), got.String()); diff != "" {
		t.Errorf("%s is out of date; run `make docs` (-file +command line):\n%s", path, diff)
	}
}
