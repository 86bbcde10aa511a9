package kubernetes_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction with its continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
}

// parseDockerfile splits a Dockerfile into instructions: comments dropped,
// lines ending in a backslash joined. No Docker daemon or registry can be
// reached here, so the image is checked as written.
func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read Dockerfile: %v", err)
	}
	var out []instruction
	var cur strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if s, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.Join(strings.Fields(args), " ")})
		cur.Reset()
	}
	return out
}

func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t, filepath.Join("..", "..", "Dockerfile"))
	var froms []string
	finalStage := 0
	for i, in := range ins {
		if in.cmd == "FROM" {
			froms = append(froms, in.args)
			finalStage = i
		}
	}
	final := ins[finalStage:]
	has := func(list []instruction, cmd, args string) bool {
		return slices.Contains(list, instruction{cmd, args})
	}
	anyContains := func(list []instruction, cmd, sub string) bool {
		return slices.ContainsFunc(list, func(in instruction) bool { return in.cmd == cmd && strings.Contains(in.args, sub) })
	}
	execForm := func(cmd string) []string {
		for _, in := range final {
			if in.cmd == cmd {
				var v []string
				if err := json.Unmarshal([]byte(in.args), &v); err != nil {
					t.Errorf("%s %s is not in exec form: %v", cmd, in.args, err)
				}
				return v
			}
		}
		return nil
	}
	tests := []struct {
		name string
		ok   bool
	}{
		{"multi-stage: golang:1.26 builder", len(froms) >= 2 && strings.HasPrefix(froms[0], "golang:1.26 ")},
		{"final stage distroless static nonroot", froms[len(froms)-1] == "gcr.io/distroless/static-debian12:nonroot"},
		{"static binary: CGO_ENABLED=0", anyContains(ins[:finalStage], "RUN", "CGO_ENABLED=0 ")},
		{"version from VERSION into the Makefile's -X flag", anyContains(ins[:finalStage], "RUN", `"$(cat VERSION)"`) &&
			anyContains(ins[:finalStage], "RUN", "-X github.com/prometheus/common/version.Version=${VERSION}")},
		{"binary copied from the builder to /vigil", anyContains(final, "COPY", "--from=build /out/vigil /vigil")},
		{"exposes 9400 4317 4318", has(final, "EXPOSE", "9400 4317 4318")},
		{"runs as nonroot", has(final, "USER", "nonroot")},
		{"ENTRYPOINT /vigil", slices.Equal(execForm("ENTRYPOINT"), []string{"/vigil"})},
		{"CMD serve with the config path the manifests mount", slices.Equal(execForm("CMD"), []string{"serve", "--config.file=" + configPath})},
		{"nothing is installed into the final image", !anyContains(final, "RUN", "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.ok {
				t.Errorf("Dockerfile: %s does not hold", tt.name)
			}
		})
	}
}

// TestDockerignore: the build context leaves out VCS data, build output and
// local TSDB data, but keeps what `go build ./cmd/vigil` needs.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", ".dockerignore"))
	if err != nil {
		t.Fatalf("read .dockerignore: %v", err)
	}
	var patterns []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	for _, p := range []string{".git", "data", "vigil"} {
		if !slices.Contains(patterns, p) {
			t.Errorf(".dockerignore does not exclude %s", p)
		}
	}
	for _, p := range patterns {
		for _, needed := range []string{"go.mod", "go.sum", "VERSION", "cmd", "*.go", "**/*.go"} {
			if p == needed {
				t.Errorf(".dockerignore excludes %s, which the build needs", p)
			}
		}
	}
}
