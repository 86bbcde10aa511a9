package main

import (
	"bytes"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/model"

	"github.com/vigilhq/vigil/internal/config"
)

// leafCommands are the full names of every command that runs.
func leafCommands(cmds []*kingpin.CmdModel) []string {
	var out []string
	for _, c := range cmds {
		if len(c.Commands) > 0 {
			out = append(out, leafCommands(c.Commands)...)
			continue
		}
		out = append(out, c.FullCommand)
	}
	return out
}

// parsed parses args as run does and returns the command, failing the test
// on a parse error.
func parsed(t *testing.T, args ...string) command {
	t.Helper()
	_, cmd, err := parse(args, io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("vigil %s: %v", strings.Join(args, " "), err)
	}
	return cmd
}

// flagValues are the effective values of the selected command's flags and
// the global ones, after parse: what run would use.
func flagValues(t *testing.T, args []string) map[string]*kingpin.FlagModel {
	t.Helper()
	app, _, _, err := parseApp(args, io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("vigil %s: %v", strings.Join(args, " "), err)
	}
	ctx, err := app.ParseContext(args)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*kingpin.FlagModel{}
	for _, f := range append(app.Model().Flags, ctx.SelectedCommand.Model().Flags...) {
		out[f.Name] = f
	}
	return out
}

// commandRows are, for every command, the least command line it runs with
// (its required flags and arguments) and what it must then use.
var commandRows = map[string]struct {
	args  []string
	check func(t *testing.T, c command, env map[string]string)
}{
	"verify": {
		args: []string{"verify", "--service", "checkout", "--version", "v2"},
		check: func(t *testing.T, c command, env map[string]string) {
			v := c.(*verifyCommand)
			want := verifyCommand{service: "checkout", version: "v2", wait: model.Duration(15 * time.Minute), interval: model.Duration(5 * time.Second), output: "text"}
			if v.service != want.service || v.version != want.version || v.wait != want.wait || v.interval != want.interval || v.output != want.output {
				t.Errorf("verify runs with service %q version %q wait %s poll-interval %s output %q; want %q %q %s %s %q",
					v.service, v.version, v.wait, v.interval, v.output, want.service, want.version, want.wait, want.interval, want.output)
			}
			checkServer(t, v.flags, env)
		},
	},
	"deploy record": {
		args: []string{"deploy", "record", "--service", "checkout", "--version", "v2"},
		check: func(t *testing.T, c command, env map[string]string) {
			d := c.(*deployRecordCommand)
			if d.event.Service != "checkout" || d.event.Version != "v2" || d.output != "text" {
				t.Errorf("deploy record: event %+v, output %q", d.event, d.output)
			}
			checkServer(t, d.flags, env)
		},
	},
	"deploy list": {
		args: []string{"deploy", "list"},
		check: func(t *testing.T, c command, env map[string]string) {
			d := c.(*deployListCommand)
			if d.opts.Limit != 20 || d.output != "text" {
				t.Errorf("deploy list: limit %d output %q", d.opts.Limit, d.output)
			}
			checkServer(t, d.flags, env)
		},
	},
	"verdicts list": {
		args: []string{"verdicts", "list"},
		check: func(t *testing.T, c command, env map[string]string) {
			d := c.(*verdictsListCommand)
			if d.opts.Limit != 20 || d.output != "text" {
				t.Errorf("verdicts list: limit %d output %q", d.opts.Limit, d.output)
			}
			checkServer(t, d.flags, env)
		},
	},
	"verdicts show": {
		args: []string{"verdicts", "show", "0123abcd"},
		check: func(t *testing.T, c command, env map[string]string) {
			d := c.(*verdictsShowCommand)
			if d.id != "0123abcd" || d.explain || d.output != "text" {
				t.Errorf("verdicts show: id %q explain %t output %q", d.id, d.explain, d.output)
			}
			checkServer(t, d.flags, env)
		},
	},
	"query": {
		args: []string{"query", "up"},
		check: func(t *testing.T, c command, env map[string]string) {
			q := c.(*queryCommand)
			if q.expr != "up" || q.output != "table" || q.isRange {
				t.Errorf("query: expr %q output %q range %t", q.expr, q.output, q.isRange)
			}
			checkServer(t, serverFlags{server: q.server, auth: q.auth}, env)
		},
	},
	"serve": {
		args: []string{"serve"},
		check: func(t *testing.T, c command, _ map[string]string) {
			cfg, err := c.(*serveCommand).config()
			if err != nil {
				t.Fatal(err)
			}
			d := config.DefaultConfig()
			if cfg.Web.ListenAddress != "127.0.0.1:9400" || cfg.Storage.Path != d.Storage.Path ||
				cfg.Receivers.OTLP.GRPC.ListenAddress != "127.0.0.1:4317" || cfg.Receivers.OTLP.HTTP.ListenAddress != "127.0.0.1:4318" {
				t.Errorf("serve listens on %s (OTLP %s, %s), data in %s; want the documented defaults",
					cfg.Web.ListenAddress, cfg.Receivers.OTLP.GRPC.ListenAddress, cfg.Receivers.OTLP.HTTP.ListenAddress, cfg.Storage.Path)
			}
		},
	},
	"check config": {
		args: []string{"check", "config", "../../docs/vigil.example.yml"},
		check: func(t *testing.T, c command, _ map[string]string) {
			if f := c.(*checkCommand).files; !slices.Equal(f, []string{"../../docs/vigil.example.yml"}) {
				t.Errorf("check config files %v", f)
			}
		},
	},
	"gen rules": {
		args: []string{"gen", "rules"},
		check: func(t *testing.T, c command, _ map[string]string) {
			g := c.(*genRulesCommand)
			if f := g.flags; f.catalog != "catalog.yml" || f.out != "rules" || f.output != "text" || g.rules.For != 2*time.Minute {
				t.Errorf("gen rules: %+v, deploy alerts for %s", f, g.rules.For)
			}
		},
	},
	"gen dashboards": {
		args: []string{"gen", "dashboards"},
		check: func(t *testing.T, c command, _ map[string]string) {
			g := c.(*genDashboardsCommand)
			if g.flags.catalog != "catalog.yml" || g.flags.out != "grafana" || g.cfg.VigilURL != defaultServer || g.timeout != 2*time.Minute {
				t.Errorf("gen dashboards: %+v %+v timeout %s", g.flags, g.cfg, g.timeout)
			}
		},
	},
	"gen all": {
		args: []string{"gen", "all"},
		check: func(t *testing.T, c command, _ map[string]string) {
			if f := c.(*genAllCommand).flags; f.catalog != "catalog.yml" || f.out != "out" {
				t.Errorf("gen all: %+v", f)
			}
		},
	},
	"backtest": {
		args: []string{"backtest"},
		check: func(t *testing.T, c command, env map[string]string) {
			b := c.(*backtestCommand)
			if b.from != "30d" || b.output != "table" {
				t.Errorf("backtest: from %q output %q", b.from, b.output)
			}
			checkServer(t, serverFlags{server: b.server, auth: b.auth}, env)
		},
	},
	"demo":                {args: []string{"demo"}},
	"version":             {args: []string{"version"}},
	"write-documentation": {args: []string{"write-documentation"}},
}

// checkServer: a client command reaches VIGIL_SERVER when it is set, else
// `vigil serve`'s default address.
func checkServer(t *testing.T, f serverFlags, env map[string]string) {
	t.Helper()
	want := defaultServer
	if s, ok := env["VIGIL_SERVER"]; ok {
		want = s
	}
	if f.server != want {
		t.Errorf("reaches %q, want %q", f.server, want)
	}
	if f.auth.bearerTokenFile != env["VIGIL_BEARER_TOKEN_FILE"] || f.auth.httpConfigFile != env["VIGIL_HTTP_CONFIG_FILE"] {
		t.Errorf("credentials %+v, want the environment's %v", f.auth, env)
	}
}

// TestEveryCommandRunsOnItsDefaults parses every command with only its
// required flags, then with every environment variable it reads set, and
// checks the values it would run with: every flag's default (or its
// environment variable), and what each command does with them.
func TestEveryCommandRunsOnItsDefaults(t *testing.T) {
	app, _ := newApp(io.Discard, io.Discard, true)
	for _, name := range leafCommands(app.Model().Commands) {
		if _, ok := commandRows[name]; !ok {
			t.Errorf("command %q has no row in commandRows: give it its least command line", name)
		}
	}
	for name, row := range commandRows {
		for _, withEnv := range []bool{false, true} {
			label := name + "/defaults"
			if withEnv {
				label = name + "/environment"
			}
			t.Run(label, func(t *testing.T) {
				env := map[string]string{}
				flags := flagValues(t, row.args)
				if withEnv {
					for _, f := range flags {
						if f.Envar != "" {
							env[f.Envar] = "from-env-" + strings.ToLower(f.Envar)
							if f.Envar == "VIGIL_SERVER" {
								env[f.Envar] = "http://vigil.example:9400"
							}
						}
					}
					if len(env) == 0 {
						t.Skip("reads no environment variable")
					}
				}
				for k := range env {
					t.Setenv(k, env[k])
				}
				for _, f := range flagValues(t, row.args) {
					switch {
					case env[f.Envar] != "":
						if got := f.Value.String(); got != env[f.Envar] {
							t.Errorf("--%s = %q, want %q from %s", f.Name, got, env[f.Envar], f.Envar)
						}
					case len(f.Default) > 0 && !slices.Contains(row.args, "--"+f.Name):
						if got, want := f.Value.String(), strings.Join(f.Default, ","); got != want && !sameDuration(got, want) {
							t.Errorf("--%s = %q, want its default %q", f.Name, got, want)
						}
					}
				}
				c := parsed(t, row.args...)
				if c.name() != name {
					t.Fatalf("parsed as %q", c.name())
				}
				if row.check != nil {
					row.check(t, c, env)
				}
			})
		}
	}
}

// sameDuration: "15m" and "15m0s" are the same default.
func sameDuration(a, b string) bool {
	da, err1 := model.ParseDuration(a)
	db, err2 := model.ParseDuration(b)
	if err1 != nil || err2 != nil {
		ta, e1 := time.ParseDuration(a)
		tb, e2 := time.ParseDuration(b)
		return e1 == nil && e2 == nil && ta == tb
	}
	return da == db
}

// TestGlobalVersionFlag: --version prints Vigil's version wherever it is
// not a command's own flag, and is the deployment's version in verify and
// deploy record — whatever the other arguments are.
func TestGlobalVersionFlag(t *testing.T) {
	tests := []struct {
		args        []string
		wantVersion bool // prints Vigil's version and exits 0
		wantCode    int
		stderr      string
	}{
		{args: []string{"--version"}, wantVersion: true},
		{args: []string{"query", "verify", "--version"}, wantVersion: true},
		{args: []string{"deploy", "list", "--service", "verify", "--version"}, wantVersion: true},
		{args: []string{"--log.level", "debug", "version"}, wantVersion: true},
		// An empty shell variable after --version is a usage error, never a promote.
		{args: []string{"verify", "--service", "s", "--version"}, wantCode: exitUsage, stderr: "expected argument for flag '--version'"},
		{args: []string{"deploy", "record", "--service", "s", "--version"}, wantCode: exitUsage, stderr: "expected argument for flag '--version'"},
		{args: []string{"verify", "--service", "s", "--version", "v2", "--poll-interval", "0s"}, wantCode: verifyError, stderr: "--poll-interval 0s: at least 250ms"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			printed := strings.Contains(stdout.String()+stderr.String(), "vigil, version ")
			if tc.wantVersion {
				if code != 0 || !printed {
					t.Errorf("exit %d, printed the version: %t\n%s%s", code, printed, stdout.String(), stderr.String())
				}
				return
			}
			if code != tc.wantCode || printed || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q", code, stderr.String(), tc.wantCode, tc.stderr)
			}
		})
	}
}

// TestClientCommandsReachVIGIL_SERVER runs the client commands with only
// their required flags and VIGIL_SERVER set, against a Vigil serving in
// this process: a pipeline step records, lists and verifies on documented
// defaults alone.
func TestClientCommandsReachVIGIL_SERVER(t *testing.T) {
	s := startSecured(t, func(c *config.Config) { c.Auth.Tokens = nil })
	t.Setenv("VIGIL_SERVER", s.url)
	vigil := func(args ...string) (string, string, int) {
		var stdout, stderr bytes.Buffer
		code := run(args, &stdout, &stderr)
		return stdout.String(), stderr.String(), code
	}
	out, errOut, code := vigil("deploy", "record", "--service", "checkout", "--version", "v2", "--previous-version", "v1", "--environment", "production", "--commit", "abc123", "--pipeline-url", "https://ci.example/run/7")
	if code != 0 || !strings.Contains(out, "Recorded checkout v2 in production (replacing v1)") {
		t.Fatalf("deploy record: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = vigil("deploy", "record", "--service", "checkout", "--version", "v2", "--previous-version", "v1", "--environment", "production", "-o", "json")
	if code != 0 || !strings.Contains(out, `"url": "https://ci.example/run/7"`) || !strings.Contains(out, `"commit": "abc123"`) {
		t.Errorf("deploy record again (-o json): exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code = vigil("deploy", "record", "--service", "checkout", "--version", "v3", "--started-at", "yesterday"); code != exitUsage || !strings.Contains(errOut, "RFC 3339") {
		t.Errorf("deploy record --started-at yesterday: exit %d %s", code, errOut)
	}
	if _, errOut, code = vigil("deploy", "record", "--service", "checkout", "--version", strings.Repeat("v", 300)); code != exitFailure || !strings.Contains(errOut, "version: must be a single line") {
		t.Errorf("deploy record of a refused deployment: exit %d %s, want 1 naming the field", code, errOut)
	}
	out, errOut, code = vigil("deploy", "list")
	if code != 0 || !contains(out, "STARTED", "checkout", "production", "v2", "v1") {
		t.Errorf("deploy list: exit %d\n%s%s", code, out, errOut)
	}
	// No traffic: the verification runs; verify reaches VIGIL_SERVER and
	// the verdict can be listed and shown while it runs.
	out, errOut, code = vigil("verify", "--service", "checkout", "--version", "v2", "--environment", "production", "--wait", "1s", "--poll-interval", "1s")
	if code != verifyInconclusive || !strings.Contains(errOut, "no decision within --wait 1s") || !strings.Contains(out, "Verdict page: "+s.url+"/verdicts/") {
		t.Errorf("verify: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = vigil("verdicts", "list")
	if code != 0 || !contains(out, "checkout", "v2", "v1", "running") {
		t.Fatalf("verdicts list: exit %d\n%s%s", code, out, errOut)
	}
	id := strings.Fields(strings.Split(out, "\n")[1])
	out, errOut, code = vigil("verdicts", "show", id[len(id)-1], "--explain")
	if code != 0 || !contains(out, "checkout v2 in production: NO DECISION YET", "No signal sampled yet", "needs about", s.url+"/verdicts/"+id[len(id)-1]) {
		t.Errorf("verdicts show --explain: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code = vigil("verdicts", "show", "nosuchid"); code != exitFailure || !strings.Contains(errOut, `no verdict "nosuchid"`) {
		t.Errorf("verdicts show of an unknown id: exit %d %s", code, errOut)
	}
	// Unreachable: exit 3 naming the address.
	t.Setenv("VIGIL_SERVER", "http://127.0.0.1:1")
	if _, errOut, code = vigil("deploy", "list"); code != exitInternal || !strings.Contains(errOut, "reach http://127.0.0.1:1") {
		t.Errorf("deploy list with VIGIL_SERVER unreachable: exit %d %s", code, errOut)
	}
	// Credentials from the environment are used (and checked) too.
	t.Setenv("VIGIL_BEARER_TOKEN_FILE", filepath.Join(t.TempDir(), "missing"))
	t.Setenv("VIGIL_SERVER", s.url)
	if _, errOut, code = vigil("deploy", "list"); code == 0 || !strings.Contains(errOut, "missing") {
		t.Errorf("deploy list with VIGIL_BEARER_TOKEN_FILE naming no file: exit %d %s", code, errOut)
	}
}
