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
// command, returning its output and exit code.
func runGenDashboards(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	app := kingpin.New("vigil", "")
	app.Terminate(nil)
	gen := newGenCommand(app)
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
	out, other := t.TempDir(), t.TempDir()

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
			args: []string{"-c", dashboardsCatalog, "-d", out, "--vigil.url", "http://vigil:9400"},
			stdout: []string{
				"wrote dashboard           " + out + "/dashboards/production/vigil-svc-checkout-production.json",
				"wrote datasource          " + out + "/provisioning/datasources/vigil.yml",
				"wrote dashboard provider  " + out + "/provisioning/dashboards/vigil.yml",
			},
		},
		{
			name:   "write and push",
			args:   []string{"-c", dashboardsCatalog, "-d", other, "--push", g.URL, "--token", "secret"},
			stdout: []string{"wrote dashboard ", "created   vigil-deployments (folder Vigil, version 1) " + g.URL + "/d/vigil-deployments/vigil-deployments"},
		},
		{
			name:      "push again changes nothing",
			args:      []string{"-c", dashboardsCatalog, "-d", other, "--push", g.URL, "-o", "json"},
			env:       map[string]string{"GRAFANA_TOKEN": "secret"},
			stdout:    []string{`"outcome": "unchanged"`, `"uid": "vigil-svc-cart-staging"`, `"kind": "datasource"`},
			notStdout: "created",
		},
		{
			name:   "grafana refuses the token",
			args:   []string{"-c", dashboardsCatalog, "-d", other, "--push", g.URL, "--token", "wrong"},
			code:   exitFailure,
			stderr: "401: Unauthorized",
		},
		{
			name:   "grafana unreachable",
			args:   []string{"-c", dashboardsCatalog, "-d", other, "--push", deadURL},
			code:   exitInternal,
			stderr: "grafana GET /api/folders",
		},
		{
			name:   "token without push",
			args:   []string{"-c", dashboardsCatalog, "-d", other, "--token", "t"},
			code:   exitUsage,
			stderr: "need --push URL",
		},
		{
			name:   "token and basic auth",
			args:   []string{"-c", dashboardsCatalog, "-d", other, "--push", g.URL, "--token", "t", "--user", "admin"},
			code:   exitUsage,
			stderr: "not both",
		},
		{
			name:   "missing catalog",
			args:   []string{"-c", "nope.yml", "-d", other},
			code:   exitFailure,
			stderr: "read catalog",
		},
		{
			name:   "bad vigil config",
			args:   []string{"-c", dashboardsCatalog, "-d", other, "--config.file", "nope.yml"},
			code:   exitFailure,
			stderr: "read config file",
		},
		{
			name:   "bad datasource uid",
			args:   []string{"-c", dashboardsCatalog, "-d", other, "--datasource.uid", "a b"},
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

	b, err := os.ReadFile(filepath.Join(out, "provisioning/datasources/vigil.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "url: http://vigil:9400") {
		t.Errorf("datasource does not point at --vigil.url:\n%s", b)
	}
	if n := len(g.DashboardUIDs()); n != 6 {
		t.Errorf("grafana holds %d dashboards, want 6", n)
	}

	// With the Vigil's config, the log panels keep the catalog matchers on
	// the labels its log_metrics.dimensions add (cart's cluster="eu-1").
	cart := filepath.Join("dashboards", "production", "vigil-svc-cart-production.json")
	vigilYML := filepath.Join(t.TempDir(), "vigil.yml")
	if err := os.WriteFile(vigilYML, []byte("log_metrics:\n  dimensions: [cluster]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	withDims := t.TempDir()
	if _, stderr, code := runGenDashboards(t, "-c", dashboardsCatalog, "-d", withDims, "--config.file", vigilYML); code != exitOK {
		t.Fatalf("--config.file: exit %d: %s", code, stderr)
	}
	for dir, want := range map[string]bool{out: false, withDims: true} {
		b, err := os.ReadFile(filepath.Join(dir, cart))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(b), `log_records_total{service=\"$service\",environment=\"$environment\",namespace=\"shop\",cluster=\"eu-1\"`); got != want {
			t.Errorf("%s: log query with the cluster matcher %v, want %v", dir, got, want)
		}
	}
}
