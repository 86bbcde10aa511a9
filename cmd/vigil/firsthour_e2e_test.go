package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil/deploy"
	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/peers"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "copy the web UI screenshots of TestFirstHour into docs/images")

// runVigilEnv runs the built vigil binary with extra environment variables.
func runVigilEnv(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, peers.VigilBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run vigil %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// TestFirstHour is the first hour of a new user, end to end: a Vigil fed
// with real OTLP traffic (the OpenTelemetry Go SDK), a pipeline that
// records its deployments and verifies them with the CLI on documented
// defaults alone (VIGIL_SERVER, the required flags), the verdicts listed
// and explained, and every page of the web UI loaded in headless Chromium:
// the DOM checked, a screenshot taken.
func TestFirstHour(t *testing.T) {
	browser := peers.Chromium(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "vigil.yml")
	if err := os.WriteFile(cfgPath, []byte(demoConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	v := peers.StartVigil(t, filepath.Join(dir, "data"), "--config.file", cfgPath)
	base := v.URL()
	env := []string{"VIGIL_SERVER=" + base}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	send := func(s simService) {
		wg.Go(func() {
			if err := s.run(ctx, v.OTLPHTTP); err != nil {
				t.Error(err)
			}
		})
	}
	send(simService{Service: "cart", Version: "v1", RPS: 40, ErrorRatio: 0.005, Latency: 30 * time.Millisecond, ErrorMessage: "out of stock", Seed: 21})
	send(simService{Service: "ledger", Version: "v1", RPS: 40, ErrorRatio: 0.01, Latency: 30 * time.Millisecond, ErrorMessage: "out of stock", Seed: 22})
	time.Sleep(10 * time.Second)

	// The pipeline: record what it shipped...
	for _, svc := range []string{"cart", "ledger"} {
		out, errOut, code := runVigilEnv(t, env, "deploy", "record", "--service", svc, "--version", "v2", "--previous-version", "v1",
			"--environment", "production", "--commit", "9fceb02", "--pipeline-url", "https://ci.example/runs/42")
		if code != 0 || !strings.Contains(out, "Recorded "+svc+" v2 in production (replacing v1)") {
			t.Fatalf("deploy record %s: exit %d\n%s%s", svc, code, out, errOut)
		}
	}
	send(simService{Service: "cart", Version: "v2", RPS: 40, ErrorRatio: 0.005, Latency: 30 * time.Millisecond, ErrorMessage: "out of stock", Seed: 23})
	send(simService{Service: "ledger", Version: "v2", RPS: 40, ErrorRatio: 0.15, Latency: 90 * time.Millisecond, ErrorMessage: "ledger write timed out", ErrorCall: "INSERT ledger", Seed: 24})
	// ... a verification of the healthy cart runs in the background while the
	// pipeline of the bad ledger waits for its verdict.
	client := deploy.Client{URL: base}
	cart, err := client.Verify(ctx, deploy.VerifyRequest{Service: "cart", Version: "v2"})
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runVigilEnv(t, env, "verify", "--service", "ledger", "--version", "v2")
	if code != verifyRollback {
		t.Fatalf("vigil verify (bad ledger v2): exit %d, want %d\n%s%s", code, verifyRollback, out, errOut)
	}
	for _, want := range []string{"ledger v2 in production: ROLLBACK", "compared with v1 (running alongside)", " requests", "FAIL", "% (", " of ",
		"ledger write timed out", "Verdict page: " + base + "/verdicts/"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify report lacks %q:\n%s", want, out)
		}
	}
	if regexp.MustCompile(`\d\.\d{5,}|e-\d\d`).MatchString(out) {
		t.Errorf("verify report shows floating-point noise:\n%s", out)
	}
	if !strings.Contains(errOut, "analysed") {
		t.Errorf("verify printed no progress line on stderr (one per poll in CI logs):\n%s", errOut)
	}
	id := regexp.MustCompile(`/verdicts/([0-9a-f]+)`).FindStringSubmatch(out)[1]

	out, errOut, code = runVigilEnv(t, env, "verdicts", "list")
	if code != 0 || !regexp.MustCompile(`ledger\s+production\s+v2\s+v1\s+rollback`).MatchString(out) || !regexp.MustCompile(`cart\s+production\s+v2\s+v1\s+running`).MatchString(out) {
		t.Errorf("verdicts list: exit %d\n%s%s", code, out, errOut)
	}
	// One example per trace: the failing call and the request it broke are one.
	out, _, _ = runVigilEnv(t, env, "verdicts", "show", id, "-o", "json")
	var shown verdict.Verdict
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatalf("verdicts show -o json: %v\n%s", err, out)
	}
	traces := map[string]bool{}
	for _, tr := range shown.ErrorTraces {
		if traces[tr.TraceID] {
			t.Errorf("trace %s is listed twice among the examples: %+v", tr.TraceID, shown.ErrorTraces)
		}
		traces[tr.TraceID] = true
	}
	if len(traces) < 2 {
		t.Errorf("example traces: %+v", shown.ErrorTraces)
	}
	out, errOut, code = runVigilEnv(t, env, "verdicts", "show", id, "--explain")
	if code != 0 || !contains(out, "ledger v2 in production: ROLLBACK", "How each signal was judged", base+"/graph?g0.") {
		t.Errorf("verdicts show --explain: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = runVigilEnv(t, env, "deploy", "list", "-o", "json")
	var rows []deploymentRow
	if err := json.Unmarshal([]byte(out), &rows); code != 0 || err != nil || len(rows) != 2 {
		t.Fatalf("deploy list -o json: exit %d %v\n%s%s", code, err, out, errOut)
	}
	for _, r := range rows {
		if r.Service == "ledger" && (r.Verdict == nil || r.Verdict.Decision != verdict.Rollback || r.Verdict.ID != id) {
			t.Errorf("deploy list: ledger's verdict %+v, want rollback %s", r.Verdict, id)
		}
	}

	// The web UI, in a real browser.
	shots := t.TempDir()
	alertSource := "/graph?" + url.Values{"g0.expr": {`sum by (service, version) (rate(traces_span_metrics_calls_total{span_kind="SPAN_KIND_SERVER"}[1m]))`}, "g0.tab": {"1"}}.Encode()
	pages := []struct {
		name, path string
		height     int // of the screenshot; 0: none
		want       []string
	}{
		{"deployments", "/", 700, []string{`href="/verdicts/` + id + `"`, ">rollback<", ">running<", "ledger", "cart", `href="https://ci.example/runs/42"`}},
		{"verdict", "/verdicts/" + id, 2000, []string{"ledger v2 in production", `id="decision">rollback<`, `data-signal="error_ratio"`,
			`<span class="status bad">FAIL</span>`, "<svg", `class="line s0"`, `class="line s1"`, "v2 starts", "ledger write timed out", "Action taken", "9fceb02"}},
		{"running", "/verdicts/" + cart.ID, 0, []string{"cart v2 in production", ">running<", `http-equiv="refresh"`, "analysed"}},
		{"status", "/status", 1100, []string{"Listening on", v.OTLPHTTP, `data-receiver="otlp"`, "spans/s", "log records/s", "in the TSDB head", "Final verdicts since start"}},
		{"graph", "/graph?g0.expr=" + url.QueryEscape(`sum by (service, version) (rate(traces_span_metrics_calls_total{span_kind="SPAN_KIND_SERVER"}[1m]))`) + "&g0.range_input=5m",
			900, []string{"<svg", `{service="ledger", version="v2"}`, `{service="cart", version="v1"}`}},
		{"alert-source", alertSource, 0, []string{"Value at", `{service="ledger", version="v2"}`}},
	}
	for _, p := range pages {
		t.Run(p.name, func(t *testing.T) {
			dom := browser.DumpDOM(t, base+p.path)
			for _, w := range p.want {
				if !strings.Contains(dom, w) {
					t.Errorf("%s: the rendered page lacks %q", p.path, w)
				}
			}
			if strings.Contains(dom, ">pending<") {
				t.Errorf("%s: a signal shows pending", p.path)
			}
			if p.height > 0 {
				browser.Screenshot(t, base+p.path, filepath.Join(shots, "ui-"+p.name+".png"), 1280, p.height)
			}
		})
	}
	if *updateScreenshots {
		for _, name := range []string{"deployments", "verdict", "status", "graph"} {
			b, err := os.ReadFile(filepath.Join(shots, "ui-"+name+".png"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join("..", "..", "docs", "images", "ui-"+name+".png"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// What a browser gets for a verdict's JSON link.
	resp, err := http.Get(base + "/api/v1/verdicts/" + id)
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"decision":"rollback"`) {
			t.Errorf("GET /api/v1/verdicts/%s: %d %.200s", id, resp.StatusCode, b)
		}
	}
}
