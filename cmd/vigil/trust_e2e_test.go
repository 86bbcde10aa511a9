package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/prompb"

	"github.com/vigilhq/vigil/deploy"
	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/internal/peers"
)

// jobCounters are a queue consumer's counters of one version: the jobs it
// processed and those that failed, as its own exporter would count them.
type jobCounters struct {
	service, version  string
	processed, failed float64
}

// at counts n more jobs, of which a share fail, and returns the samples at ts.
func (j *jobCounters) at(ts time.Time, n, failShare float64) []prompb.TimeSeries {
	j.processed += n
	j.failed += n * failShare
	ls := func(name string) []prompb.Label {
		return []prompb.Label{{Name: "__name__", Value: name}, {Name: "environment", Value: "production"},
			{Name: "service", Value: j.service}, {Name: "version", Value: j.version}}
	}
	t := ts.UnixMilli()
	return []prompb.TimeSeries{
		{Labels: ls("jobs_processed_total"), Samples: []prompb.Sample{{Value: j.processed, Timestamp: t}}},
		{Labels: ls("jobs_failed_total"), Samples: []prompb.Sample{{Value: j.failed, Timestamp: t}}},
	}
}

// bearer adds a bearer token to every request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// remoteWriteAs sends a remote_write request with a bearer token ("" for none)
// to base's path.
func remoteWriteAs(t *testing.T, base, path, token string, series []prompb.TimeSeries) {
	t.Helper()
	hc := &http.Client{Transport: http.DefaultTransport}
	if token != "" {
		hc.Transport = bearer{token: token, next: http.DefaultTransport}
	}
	api, err := remoteapi.NewAPI(base, remoteapi.WithAPIPath(path), remoteapi.WithAPIHTTPClient(hc), remoteapi.WithAPINoRetryOnRateLimit(),
		remoteapi.WithAPIBackoff(remoteapi.BackoffConfig{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond, MaxRetries: 2}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := api.Write(ctx, remoteapi.WriteV1MessageType, &prompb.WriteRequest{Timeseries: series}); err != nil {
		t.Errorf("remote write to %s%s: %v", base, path, err)
	}
}

// jobsCatalog is a catalog of queue consumers counting jobs (no HTTP
// traffic), each with its rollback section.
func jobsCatalog(services map[string]string) string {
	s := "defaults: {environment: production}\nservices:\n"
	for _, name := range sortedKeys(services) {
		s += fmt.Sprintf("  - name: %s\n    signals: {requests: jobs_processed_total, errors: jobs_failed_total, unit: jobs}\n", name)
		if r := services[name]; r != "" {
			s += "    rollback: " + r + "\n"
		}
	}
	return s
}

func sortedKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// startTrustVigil starts the binary with one token per scope, the catalog
// and the deploy: section given.
func startTrustVigil(t *testing.T, catalog, deploySection string) (v *peers.Vigil, tokens map[auth.Scope]string, dir string) {
	t.Helper()
	dir = t.TempDir()
	cat := filepath.Join(dir, "catalog.yml")
	writeFile(t, cat, catalog)
	authSection, tokens := tokenFiles(t, dir)
	cfg := filepath.Join(dir, "vigil.yml")
	writeFile(t, cfg, fmt.Sprintf("%sdeploy:\n  catalog: %s\n%s", authSection, cat, deploySection))
	return peers.StartVigil(t, filepath.Join(dir, "data"), "--config", cfg), tokens, dir
}

// recordDeployment records service version (replacing previous) started at start.
func recordDeployment(t *testing.T, base, token, service, version, previous string, start time.Time) string {
	t.Helper()
	body := fmt.Sprintf(`{"service":%q,"environment":"production","version":%q,"previousVersion":%q,"startedAt":%q}`, service, version, previous, start.UTC().Format(time.RFC3339))
	code, _, out := httpDo(t, http.DefaultClient, "POST", base+"/api/v1/deployments", token, body)
	if code != http.StatusCreated {
		t.Fatalf("record %s %s: %d %s", service, version, code, out)
	}
	return jsonField(t, out, "id")
}

// TestShadowModeE2E: the same bad version of two queue consumers (their own
// job counters, no HTTP traffic), one in shadow mode, one enforced, with
// authentication on (Vigil acts only then). Both are judged rollback and
// `vigil verify` exits 1 for both; the enforced one's webhook is called
// once; the shadow one's deployment records wouldAct and its webhook
// receives nothing; the verdicts are counted by mode.
func TestShadowModeE2E(t *testing.T) {
	listener := newRollbackListener(t)
	v, tokens, dir := startTrustVigil(t, jobsCatalog(map[string]string{
		"mailer": fmt.Sprintf("{mode: shadow, webhook: {url: %q}}", listener.URL),
		"worker": fmt.Sprintf("{mode: enforce, webhook: {url: %q}}", listener.URL),
	}), "  step: 1s\n  window: 30s\n  rate_window: 2s\n  watch: 0s\n")
	now := time.Now().Truncate(time.Second)
	deployAt := now.Add(-40 * time.Second)
	ids := map[string]string{}
	for _, svc := range []string{"mailer", "worker"} {
		old, bad := &jobCounters{service: svc, version: "v1"}, &jobCounters{service: svc, version: "v2"}
		var series []prompb.TimeSeries
		for ts := deployAt.Add(-60 * time.Second); ts.Before(now); ts = ts.Add(time.Second) {
			if ts.Before(deployAt) {
				series = append(series, old.at(ts, 50, 0.01)...)
			} else {
				series = append(series, bad.at(ts, 50, 0.2)...)
			}
		}
		remoteWriteAs(t, v.URL(), "/api/v1/write", tokens[auth.ScopeWrite], series)
		ids[svc] = recordDeployment(t, v.URL(), tokens[auth.ScopeDeploy], svc, "v2", "v1", deployAt)
	}
	ciToken := filepath.Join(dir, "ci.token")
	for _, svc := range []string{"mailer", "worker"} {
		stdout, stderr, code := runVigil(t, "verify", "--server", v.URL(), "--service", svc, "--version", "v2", "--bearer-token-file", ciToken,
			"--wait", "60s", "--poll-interval", "500ms", "-o", "json")
		if code != verifyRollback {
			t.Fatalf("verify %s: exit %d, want %d\n%s\n%s", svc, code, verifyRollback, stdout, stderr)
		}
		if !strings.Contains(stdout, `"summary": "Rollback after`) || !strings.Contains(stdout, " jobs vs ") {
			t.Errorf("verify %s: the verdict's summary does not explain it in jobs:\n%.2000s", svc, stdout)
		}
	}
	read := tokens[auth.ScopeRead]
	eventually(t, 30*time.Second, "the enforced rollback", func() bool { return len(listener.Calls()) > 0 })
	eventually(t, 30*time.Second, "the shadow rollback recorded with wouldAct", func() bool {
		_, _, body := httpDo(t, http.DefaultClient, "GET", v.URL()+"/api/v1/deployments/"+ids["mailer"], read, "")
		return strings.Contains(body, `"wouldAct"`)
	})
	_, _, body := httpDo(t, http.DefaultClient, "GET", v.URL()+"/api/v1/deployments/"+ids["mailer"], read, "")
	var d struct{ Data deploy.Deployment }
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Data.Actions) != 0 || len(d.Data.WouldAct) != 1 || d.Data.WouldAct[0].Target != listener.URL ||
		!strings.Contains(d.Data.WouldAct[0].Message, "shadow mode") || d.Data.WouldAct[0].Principal != "ci" {
		t.Errorf("mailer (shadow): actions %+v, wouldAct %+v", d.Data.Actions, d.Data.WouldAct)
	}
	if c := listener.Calls(); len(c) != 1 || !strings.Contains(c[0], `"service":"worker"`) || !strings.Contains(c[0], `"summary":"Rollback after`) {
		t.Errorf("webhook calls %q, want one, for worker, with the summary", c)
	}
	_, _, metrics := httpDo(t, http.DefaultClient, "GET", v.URL()+"/metrics", read, "")
	for _, want := range []string{`vigil_verdicts_total{decision="rollback",mode="shadow"} 1`, `vigil_verdicts_total{decision="rollback",mode="enforce"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestWatchE2E: a queue consumer's new version is promoted, then starts
// failing after the promotion. `vigil verify` exits 0 at the promotion,
// while the watch goes on; the watch reports the regression as a new
// rollback verdict on the deployment, and Vigil acts on it once
// (rollback.after_promotion). Times are scaled down 30×: a 20 s window
// (10 min), a 60 s watch (30 min), the regression 10 s after the promotion
// (5 min), a 1 s step.
func TestWatchE2E(t *testing.T) {
	listener := newRollbackListener(t)
	v, tokens, dir := startTrustVigil(t, jobsCatalog(map[string]string{
		"worker": fmt.Sprintf("{mode: enforce, after_promotion: true, webhook: {url: %q}}", listener.URL),
	}), "  step: 1s\n  window: 20s\n  rate_window: 2s\n  watch: 60s\n")
	write := tokens[auth.ScopeWrite]
	deployAt := time.Now().Truncate(time.Second)
	old := &jobCounters{service: "worker", version: "v1"}
	var history []prompb.TimeSeries
	for ts := deployAt.Add(-40 * time.Second); ts.Before(deployAt); ts = ts.Add(time.Second) {
		history = append(history, old.at(ts, 50, 0.01)...)
	}
	remoteWriteAs(t, v.URL(), "/api/v1/write", write, history)
	id := recordDeployment(t, v.URL(), tokens[auth.ScopeDeploy], "worker", "v2", "v1", deployAt)

	// The new version serves live, a sample a second: healthy until 10 s
	// after the promotion, then 30% of its jobs fail.
	var promotedAt atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		cur := &jobCounters{service: "worker", version: "v2"}
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for ts := deployAt; ; ts = ts.Add(time.Second) {
			share := 0.01
			if p := promotedAt.Load(); p != 0 && ts.After(time.Unix(0, p).Add(10*time.Second)) {
				share = 0.3
			}
			remoteWriteAs(t, v.URL(), "/api/v1/write", write, cur.at(ts, 50, share))
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})

	stdout, stderr, code := runVigil(t, "verify", "--server", v.URL(), "--service", "worker", "--version", "v2",
		"--bearer-token-file", filepath.Join(dir, "ci.token"), "--wait", "90s", "--poll-interval", "500ms", "-o", "json")
	promotedAt.Store(time.Now().UnixNano())
	if code != verifyPromote {
		t.Fatalf("verify: exit %d, want %d (promote)\n%s\n%s", code, verifyPromote, stdout, stderr)
	}
	var verdict struct{ ID string }
	if err := json.Unmarshal([]byte(stdout), &verdict); err != nil || verdict.ID == "" {
		t.Fatalf("verify output: %v\n%s", err, stdout)
	}
	status := func() deploy.VerifyStatus {
		t.Helper()
		_, _, body := httpDo(t, http.DefaultClient, "GET", v.URL()+"/api/v1/verify/"+verdict.ID, tokens[auth.ScopeDeploy], "")
		var env struct{ Data deploy.VerifyStatus }
		if err := json.Unmarshal([]byte(body), &env); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		return env.Data
	}
	// verify returned at the promotion, with the watch still running.
	if st := status(); st.Phase != "promote" || st.Watch == nil || st.Watch.Phase != deploy.PhaseWatching {
		t.Fatalf("after verify returned: phase %s, watch %+v", st.Phase, st.Watch)
	}
	eventually(t, 90*time.Second, "the watch to find the regression", func() bool {
		st := status()
		return st.Watch != nil && st.Watch.Phase != deploy.PhaseWatching
	})
	st := status()
	if st.Phase != "promote" || st.Watch.Phase != "rollback" || !strings.HasPrefix(st.Watch.Summary, "Regression") {
		t.Fatalf("after the watch: phase %s, watch %+v", st.Phase, st.Watch)
	}
	eventually(t, 30*time.Second, "the rollback after the promotion", func() bool { return len(listener.Calls()) > 0 })
	if c := listener.Calls(); len(c) != 1 || !strings.Contains(c[0], `"stage":"watch"`) || !strings.Contains(c[0], `"deploymentId":"`+id+`"`) {
		t.Errorf("webhook calls %q, want one for the watch's verdict", c)
	}
	_, _, body := httpDo(t, http.DefaultClient, "GET", v.URL()+"/api/v1/verdicts?service=worker", tokens[auth.ScopeRead], "")
	if !strings.Contains(body, `"stage":"watch"`) || !strings.Contains(body, `"stage":"verify"`) {
		t.Errorf("verdicts of worker lack the watch's or the verification's: %.1000s", body)
	}
}

// TestBacktestCLI: 100 minutes of three queue consumers' history written
// through the running binary (and into a real Prometheus), with their
// deployments recorded — one rolled back by hand, one labelled bad by the
// user. `vigil backtest` with a read token gives the known answers, the
// same output twice, two policies side by side, and the same decisions
// when it replays here over Prometheus's remote_read.
func TestBacktestCLI(t *testing.T) {
	v, tokens, dir := startTrustVigil(t, jobsCatalog(map[string]string{"alpha": "", "beta": "", "gamma": ""}), "")
	prom := peers.StartPrometheus(t, func(string) string { return "global: {scrape_interval: 15s}\n" }, "--web.enable-remote-write-receiver")
	t0 := time.Now().Add(-100 * time.Minute).Truncate(time.Minute)
	type dep struct {
		service, version, previous string
		at                         int // minutes after t0
		fail                       float64
		want                       string // truth/source, decision
	}
	deps := []dep{
		{"alpha", "v1", "", -15, 0.01, ""},
		{"alpha", "v2", "v1", 0, 0.01, "good/none promote"},
		{"alpha", "v3", "v2", 25, 0.15, "bad/rollback rollback"}, // rolled back by hand 10 minutes later
		{"alpha", "v2", "v3", 35, 0.01, "good/none promote"},
		{"alpha", "v4", "v2", 60, 0.01, "good/none promote"},
		{"beta", "v1", "", -15, 0.02, ""},
		{"beta", "v2", "v1", 10, 0.02, "good/none promote"},
		{"beta", "v3", "v2", 40, 0.12, "bad/label rollback"}, // the user's label
		{"beta", "v4", "v3", 70, 0.02, "good/none promote"},
		{"gamma", "v1", "", -15, 0.01, ""},
		{"gamma", "v2", "v1", 20, 0.01, "good/none promote"},
		{"gamma", "v3", "v2", 50, 0.01, "good/none promote"},
	}
	// Write the history a minute at a time, every service's version of the
	// moment, 10 jobs a second sampled every 5 s.
	counters := map[string]*jobCounters{}
	end := time.Now().Truncate(5 * time.Second)
	for m := t0.Add(-15 * time.Minute); m.Before(end); m = m.Add(time.Minute) {
		var series []prompb.TimeSeries
		for ts := m; ts.Before(m.Add(time.Minute)) && ts.Before(end); ts = ts.Add(5 * time.Second) {
			for _, svc := range []string{"alpha", "beta", "gamma"} {
				var cur dep
				for _, d := range deps {
					if d.service == svc && !t0.Add(time.Duration(d.at)*time.Minute).After(ts) {
						cur = d
					}
				}
				key := svc + "/" + cur.version
				if counters[key] == nil {
					counters[key] = &jobCounters{service: svc, version: cur.version}
				}
				series = append(series, counters[key].at(ts, 50, cur.fail)...)
			}
		}
		remoteWriteAs(t, v.URL(), "/api/v1/write", tokens[auth.ScopeWrite], series)
		remoteWriteAs(t, prom.URL(), "/api/v1/write", "", series)
	}
	for _, d := range deps {
		if d.previous != "" {
			recordDeployment(t, v.URL(), tokens[auth.ScopeDeploy], d.service, d.version, d.previous, t0.Add(time.Duration(d.at)*time.Minute))
		}
	}
	labels := filepath.Join(dir, "labels.csv")
	writeFile(t, labels, fmt.Sprintf("service,version,start,label\nbeta,v3,%s,bad\n", t0.Add(40*time.Minute).UTC().Format(time.RFC3339)))
	readToken := filepath.Join(dir, "grafana.token")
	args := []string{"backtest", "--server", v.URL(), "--bearer-token-file", readToken, "--from", t0.Add(-time.Minute).UTC().Format(time.RFC3339),
		"--to", end.UTC().Format(time.RFC3339), "--labels", labels}

	table, stderr, code := runVigil(t, args...)
	if code != 0 {
		t.Fatalf("backtest: exit %d\n%s\n%s", code, table, stderr)
	}
	again, _, _ := runVigil(t, args...)
	if again != table {
		t.Errorf("a second backtest differs:\n%s\n---\n%s", table, again)
	}
	t.Logf("\n%s", table)
	if !contains(table, "Backtest of 9 deployments", "bad (rollback)", "bad (label)", "rollback 30s: error_ratio", "PRECISION", "RECALL") || strings.Contains(table, "[missed]") || strings.Contains(table, "[false rollback]") {
		t.Errorf("table:\n%s", table)
	}

	out, stderr, code := runVigil(t, append(args, "-o", "json")...)
	if code != 0 {
		t.Fatalf("backtest -o json: exit %d\n%s", code, stderr)
	}
	var rep deploy.BacktestReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if s := rep.Scores[0].Overall; s.Deployments != 9 || s.Bad != 2 || s.TruePositives != 2 || s.FalsePositives != 0 || *s.Precision != 1 || *s.Recall != 1 {
		t.Errorf("scores %+v", s)
	}
	byKey := map[string]string{}
	for _, d := range rep.Deployments {
		key := fmt.Sprintf("%s %s@%d", d.Service, d.Version, int(d.Start.Sub(t0).Minutes()))
		byKey[key] = d.Truth.Label + "/" + d.Truth.Source + " " + string(d.Results[0].Decision)
	}
	for _, d := range deps {
		if d.want == "" {
			continue
		}
		key := fmt.Sprintf("%s %s@%d", d.service, d.version, d.at)
		if byKey[key] != d.want {
			t.Errorf("%s: %q, want %q", key, byKey[key], d.want)
		}
	}

	// Two policies side by side.
	strict, lax := filepath.Join(dir, "strict.yml"), filepath.Join(dir, "lax.yml")
	writeFile(t, strict, "policy: {alpha: 0.001}\n")
	writeFile(t, lax, "policy: {min_requests: 1000000}\n")
	out, stderr, code = runVigil(t, append(args, "--policy", strict, "--policy", lax, "-o", "json")...)
	if code != 0 {
		t.Fatalf("backtest with two policies: exit %d\n%s", code, stderr)
	}
	var ab deploy.BacktestReport
	if err := json.Unmarshal([]byte(out), &ab); err != nil {
		t.Fatal(err)
	}
	if len(ab.Scores) != 2 || ab.Scores[0].Policy != "strict" || ab.Scores[1].Policy != "lax" || ab.Scores[1].Overall.Rollbacks != 0 || ab.Scores[0].Overall.Rollbacks != 2 {
		t.Errorf("two policies: %+v", ab.Scores)
	}

	// The same, replayed here over Prometheus's remote_read.
	_, _, list := httpDo(t, http.DefaultClient, "GET", v.URL()+"/api/v1/deployments?limit=100", tokens[auth.ScopeRead], "")
	depsFile := filepath.Join(dir, "deployments.json")
	writeFile(t, depsFile, list)
	local := filepath.Join(dir, "local.yml")
	writeFile(t, local, fmt.Sprintf("deploy:\n  catalog: %s\n", filepath.Join(dir, "catalog.yml")))
	out, stderr, code = runVigil(t, "backtest", "--remote-read", prom.URL()+"/api/v1/read", "--deployments", depsFile, "--config.file", local,
		"--from", t0.Add(-time.Minute).UTC().Format(time.RFC3339), "--to", end.UTC().Format(time.RFC3339), "--labels", labels, "-o", "json")
	if code != 0 {
		t.Fatalf("backtest over remote_read: exit %d\n%s", code, stderr)
	}
	var remote deploy.BacktestReport
	if err := json.Unmarshal([]byte(out), &remote); err != nil {
		t.Fatal(err)
	}
	for i, d := range remote.Deployments {
		if i >= len(rep.Deployments) || d.ID != rep.Deployments[i].ID || d.Results[0].Decision != rep.Deployments[i].Results[0].Decision || d.Truth != rep.Deployments[i].Truth {
			t.Errorf("over remote_read, deployment %d: %+v, on the server %+v", i, d, rep.Deployments[min(i, len(rep.Deployments)-1)])
		}
	}
	if len(remote.Deployments) != len(rep.Deployments) {
		t.Errorf("%d deployments over remote_read, %d on the server", len(remote.Deployments), len(rep.Deployments))
	}

	// Without a read token: refused.
	if _, stderr, code := runVigil(t, "backtest", "--server", v.URL()); code != exitInternal || !strings.Contains(stderr, "401") {
		t.Errorf("backtest without a token: exit %d %s", code, stderr)
	}
	_ = os.Remove(depsFile)
}
