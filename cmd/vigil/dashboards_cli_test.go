package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecthomas/kingpin/v2"

	"github.com/vigilhq/vigil/internal/grafanatest"
)

const dashboardsCatalog = "../../dashboards/testdata/catalog.yml"

// runGenDashboards parses args as `vigil gen dashboards ...` and runs the
// command, returning its output and exit code. It builds its own `gen`
// command: the real one lives in gen.go.
func runGenDashboards(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	app := kingpin.New("vigil", "")
	app.Terminate(nil)
	gen := app.Command("gen", "Generate files from the service catalog.")
	cmd := newGenDashboardsCommand(gen, &stdout, &stderr)
	selected, err := app.Parse(append([]string{"gen", "dashboards"}, args...))
	if err != nil {
		return stdout.String(), err.Error(), exitUsage
	}
	if selected != cmd.name() {
		t.Fatalf("selected %q, command is %q", selected, cmd.name())
	}
	err = cmd.run()
	if err == nil {
		return stdout.String(), stderr.String(), exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return stdout.String(), ee.Error(), ee.code
	}
	return stdout.String(), err.Error(), exitFailure
}

func TestGenDashboardsCLI(t *testing.T) {
	g := grafanatest.New(t, grafanatest.Options{Token: "secret"})
	dead := grafanatest.New(t, grafanatest.Options{})
	deadURL := dead.URL
	dead.Close()
	out := t.TempDir()

	for _, tc := range []struct {
		name       string
		args       []string
		env        map[string]string
		code       int
		stdout     []string
		stderr     string
		notStdout  string
		wantFolder int
	}{
		{
			name: "write files",
			args: []string{"--catalog", dashboardsCatalog, "-o", out, "--vigil.url", "http://vigil:9400"},
			stdout: []string{
				"wrote " + out + "/grafana/dashboards/production/vigil-svc-checkout-production.json",
				"wrote " + out + "/grafana/provisioning/datasources/vigil.yml",
				"wrote " + out + "/grafana/provisioning/dashboards/vigil.yml",
			},
		},
		{
			name:   "push creates",
			args:   []string{"--catalog", dashboardsCatalog, "--push", g.URL, "--token", "secret"},
			stdout: []string{"created   vigil-deployments (folder Vigil, version 1) " + g.URL + "/d/vigil-deployments/vigil-deployments"},
		},
		{
			name:      "push again changes nothing",
			args:      []string{"--catalog", dashboardsCatalog, "--push", g.URL},
			env:       map[string]string{"GRAFANA_TOKEN": "secret"},
			stdout:    []string{"unchanged vigil-svc-cart-staging (folder staging, version 1)"},
			notStdout: "created",
		},
		{
			name:   "grafana refuses the token",
			args:   []string{"--catalog", dashboardsCatalog, "--push", g.URL, "--token", "wrong"},
			code:   exitFailure,
			stderr: "401: Unauthorized",
		},
		{
			name:   "grafana unreachable",
			args:   []string{"--catalog", dashboardsCatalog, "--push", deadURL},
			code:   exitInternal,
			stderr: "grafana GET /api/folders",
		},
		{
			name:   "nothing to do",
			args:   []string{"--catalog", dashboardsCatalog},
			code:   exitUsage,
			stderr: "give --output DIR, --push URL, or both",
		},
		{
			name:   "token and basic auth",
			args:   []string{"--catalog", dashboardsCatalog, "--push", g.URL, "--token", "t", "--user", "admin"},
			code:   exitUsage,
			stderr: "not both",
		},
		{
			name:   "missing catalog",
			args:   []string{"--catalog", "nope.yml", "-o", out},
			code:   exitFailure,
			stderr: "read catalog",
		},
		{
			name:   "bad datasource uid",
			args:   []string{"--catalog", dashboardsCatalog, "-o", out, "--datasource.uid", "a b"},
			code:   exitUsage,
			stderr: `datasource uid "a b"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			stdout, stderr, code := runGenDashboards(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout)
				}
			}
			if tc.notStdout != "" && strings.Contains(stdout, tc.notStdout) {
				t.Errorf("stdout has %q:\n%s", tc.notStdout, stdout)
			}
			if !strings.Contains(stderr, tc.stderr) {
				t.Errorf("error %q, want it to contain %q", stderr, tc.stderr)
			}
		})
	}

	b, err := os.ReadFile(filepath.Join(out, "grafana/provisioning/datasources/vigil.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "url: http://vigil:9400") {
		t.Errorf("datasource does not point at --vigil.url:\n%s", b)
	}
	if n := len(g.DashboardUIDs()); n != 6 {
		t.Errorf("grafana holds %d dashboards, want 6", n)
	}
}
