package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/internal/peers"
)

// rollbackListener is a rollback webhook on 127.0.0.1: it records every
// call, so a test can prove that nothing was rolled back.
type rollbackListener struct {
	*httptest.Server
	mu    sync.Mutex
	calls []string
}

func newRollbackListener(t *testing.T) *rollbackListener {
	l := &rollbackListener{}
	l.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		l.mu.Lock()
		l.calls = append(l.calls, string(b))
		l.mu.Unlock()
	}))
	t.Cleanup(l.Close)
	return l
}

func (l *rollbackListener) Calls() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.calls...)
}

// startDeployVigil starts a Vigil whose catalog rolls checkout back
// automatically through the listener, with deploySection added under
// deploy:, and with one token per scope when withAuth (tokens by scope).
func startDeployVigil(t *testing.T, hook string, deploySection string, withAuth bool) (*peers.Vigil, map[auth.Scope]string) {
	t.Helper()
	dir := t.TempDir()
	cat := filepath.Join(dir, "catalog.yml")
	if err := os.WriteFile(cat, []byte(fmt.Sprintf(`
defaults: {environment: production}
services:
  - name: checkout
    rollback: {automatic: true, webhook: {url: %q}}
`, hook)), 0o600); err != nil {
		t.Fatal(err)
	}
	var authSection string
	var tokens map[auth.Scope]string
	if withAuth {
		authSection, tokens = tokenFiles(t, dir)
	}
	cfg := filepath.Join(dir, "vigil.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("%sdeploy:\n  catalog: %s\n%s", authSection, cat, deploySection)), 0o600); err != nil {
		t.Fatal(err)
	}
	return peers.StartVigil(t, filepath.Join(dir, "data"), "--config", cfg), tokens
}

func postDeploy(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAttackDeploy replays the attacks on the verdict path of issue 14
// against the real binary, with authentication off (every request is
// anonymous): none may stall the process or roll anything back.
func TestAttackDeploy(t *testing.T) {
	hook := newRollbackListener(t)
	// Every signal query of this Vigil fails when run, as a broken custom
	// signal does: its verifications must still end.
	v, _ := startDeployVigil(t, hook.URL, `  step: 1s
  rate_window: 2s
  max_evaluation_errors: 2
  signals:
    - {name: broken, query: 'label_replace(up{$selector}, "x", "$1", "y", "(")'}
`, false)
	base := v.URL()
	twentyMinutesAgo := time.Now().Add(-20 * time.Minute).UTC().Format(time.RFC3339)
	attacks := []struct {
		name, path, body string
		code             int
		want             string
	}{
		{"a 10000d window from 1970 (pinned a core and 3.8 GB, never ended)", "/api/v1/verify",
			`{"service":"checkout","version":"v2","baseline":"v1","window":"10000d","start":"1970-01-01T00:00:00Z"}`, 400, "deploy.max_window"},
		{"the same through the verdict hook", "/api/v1/hooks/verdict",
			`{"service":"checkout","version":"v2","baseline":"v1","window":"10000d","start":"1970-01-01T00:00:00Z"}`, 400, "deploy.max_window"},
		{"a start in 1970 alone", "/api/v1/verify",
			`{"service":"checkout","version":"v2","baseline":"v1","start":"1970-01-01T00:00:00Z"}`, 400, "more than one window"},
		{"a request-supplied critical signal rolls checkout back", "/api/v1/verify",
			`{"service":"checkout","version":"v2","baseline":"v1","window":"30m","start":"` + twentyMinutesAgo + `","signals":[{"name":"x","query":"vector(1)","max":0,"critical":true}]}`,
			400, "signals[0] (x): a verify request may not bring critical: true, max"},
		{"the same through the verdict hook", "/api/v1/hooks/verdict?type=rollback",
			`{"service":"checkout","version":"v2","baseline":"v1","window":"30m","start":"` + twentyMinutesAgo + `","signals":[{"name":"x","query":"vector(1)","max":0,"critical":true}]}`,
			400, "deploy.allow_request_signals is false"},
		{"an alert signal does the same", "/api/v1/verify",
			`{"service":"checkout","version":"v2","baseline":"v1","window":"30m","start":"` + twentyMinutesAgo + `","signals":[{"name":"x","query":"vector(1)","kind":"alert"}]}`,
			400, "kind: alert"},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			code, body := postDeploy(t, base+a.path, a.body)
			if code != a.code || !strings.Contains(body, a.want) {
				t.Errorf("%d %s, want %d naming %q", code, body, a.code, a.want)
			}
			// The process stays responsive.
			if code, _ := apiGet(t, base, "/api/v1/query", url.Values{"query": {"vector(1)"}}); code != 200 {
				t.Errorf("query after the attack: %d", code)
			}
		})
	}

	// A verification whose queries keep failing ends: `vigil verify` exits
	// 3 with the error verdict (two failures in a row, a second apart).
	stdout, stderr, code := runVigil(t, "verify", "--server", base, "--service", "checkout", "--version", "v3", "--baseline", "v1",
		"--wait", "60s", "--poll-interval", "500ms")
	if code != verifyError || !strings.Contains(stdout, "checkout v3 in production: ERROR") || !strings.Contains(stderr, "evaluations in a row failed") {
		t.Errorf("verify of a failing verification: exit %d, want %d\n%s\n%s", code, verifyError, stdout, stderr)
	}
	code, r := apiGet(t, base, "/api/v1/verdicts", url.Values{"service": {"checkout"}})
	if code != 200 || !strings.Contains(string(r.Data), `"decision":"error"`) {
		t.Errorf("verdicts: %d %.300s", code, r.Data)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"vigil_verifications_running 0", `vigil_verdicts_total{decision="error",mode="enforce"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if c := hook.Calls(); len(c) != 0 {
		t.Errorf("the rollback webhook was called: %q", c)
	}
}

// TestOperatorSignalRollsBack is the control of TestAttackDeploy, with
// authentication on (Vigil acts only then) and the CI's deploy token: the
// request-supplied critical signal is still refused and nothing is called;
// the same signal from the operator's deploy.signals rolls checkout back,
// once, recorded with the token's name.
func TestOperatorSignalRollsBack(t *testing.T) {
	hook := newRollbackListener(t)
	v, tokens := startDeployVigil(t, hook.URL, `  signals:
    - {name: x, query: 'vector(1)', max: 0, critical: true}
`, true)
	ci := tokens[auth.ScopeDeploy]
	start := time.Now().Add(-20 * time.Minute).UTC().Format(time.RFC3339)
	code, _, body := httpDo(t, http.DefaultClient, "POST", v.URL()+"/api/v1/deployments", ci,
		`{"service":"checkout","environment":"production","version":"v2","previousVersion":"v1","startedAt":"`+start+`"}`)
	if code != http.StatusCreated {
		t.Fatalf("record: %d %s", code, body)
	}
	var rec struct{ Data struct{ ID string } }
	if err := json.Unmarshal([]byte(body), &rec); err != nil {
		t.Fatal(err)
	}

	code, _, body = httpDo(t, http.DefaultClient, "POST", v.URL()+"/api/v1/verify", ci,
		`{"service":"checkout","version":"v2","window":"30m","start":"`+start+`","signals":[{"name":"y","query":"vector(1)","max":0,"critical":true}]}`)
	if code != http.StatusBadRequest || !strings.Contains(body, "deploy.allow_request_signals is false") {
		t.Fatalf("request-supplied critical signal with the deploy token: %d %.300s, want 400", code, body)
	}
	if c := hook.Calls(); len(c) != 0 {
		t.Fatalf("the webhook was called: %q", c)
	}

	code, _, body = httpDo(t, http.DefaultClient, "POST", v.URL()+"/api/v1/verify", ci, `{"service":"checkout","version":"v2","window":"30m"}`)
	if code != http.StatusCreated || !strings.Contains(body, `"phase":"rollback"`) {
		t.Fatalf("verify: %d %.500s", code, body)
	}
	eventually(t, 30*time.Second, "the rollback webhook", func() bool { return len(hook.Calls()) > 0 })
	if c := hook.Calls(); len(c) != 1 || !strings.Contains(c[0], `"service":"checkout"`) || !strings.Contains(c[0], `"failingSignals":["x"]`) {
		t.Errorf("webhook calls %q", c)
	}
	eventually(t, 30*time.Second, "the action recorded", func() bool {
		_, _, body := httpDo(t, http.DefaultClient, "GET", v.URL()+"/api/v1/deployments/"+rec.Data.ID, tokens[auth.ScopeRead], "")
		return strings.Contains(body, `"ok":true`) && strings.Contains(body, `"principal":"ci"`)
	})
}

// --- a flood of deployment events ----------------------------------------

// authGet sends GET with a bearer token, without failing the test, so that
// it can run in a goroutine.
func authGet(client *http.Client, u, token string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// listDeployments is GET /api/v1/deployments with no practical limit.
func listDeployments(client *http.Client, base, token string) ([]deployRecord, error) {
	code, b, err := authGet(client, base+"/api/v1/deployments?limit=1000000", token)
	if err != nil {
		return nil, err
	}
	var r struct{ Data []deployRecord }
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v1/deployments: %d %.300s", code, b)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("GET /api/v1/deployments: %w", err)
	}
	return r.Data, nil
}

type deployRecord struct {
	ID, Service, Environment, Version string
	StartedAt                         time.Time
}

// infoSeries runs an instant query of the read API and returns its series
// as service/version pairs.
func infoSeries(client *http.Client, base, token, q string) ([]string, error) {
	code, b, err := authGet(client, base+"/api/v1/query?"+url.Values{"query": {q}}.Encode(), token)
	if err != nil {
		return nil, err
	}
	var r struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
			} `json:"result"`
		}
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("query %s: %d %.300s", q, code, b)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("query %s: %w", q, err)
	}
	var out []string
	for _, s := range r.Data.Result {
		out = append(out, s.Metric["service"]+" "+s.Metric["version"])
	}
	sort.Strings(out)
	return out, nil
}

// currentOf is the newest deployment of each service in list (as
// service/version pairs): what vigil_deployment_info should show.
func currentOf(list []deployRecord) []string {
	newest := map[string]deployRecord{}
	for _, d := range list {
		if o, ok := newest[d.Service]; !ok || d.StartedAt.After(o.StartedAt) {
			newest[d.Service] = d
		}
	}
	var out []string
	for _, d := range newest {
		out = append(out, d.Service+" "+d.Version)
	}
	sort.Strings(out)
	return out
}

// fileLines reads the deployments file: its size, its lines, and the
// deployment IDs it names.
func fileLines(t *testing.T, path string) (size, lines int, ids map[string]bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ids = map[string]bool{}
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		var rec struct{ Deployment *deployRecord }
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("%s: a line that is not JSON: %v\n%.300s", path, err, l)
		}
		if rec.Deployment != nil {
			ids[rec.Deployment.ID] = true
		}
	}
	return len(b), strings.Count(string(b), "\n"), ids
}

// TestAttackDeploymentFlood: a client holding a valid deploy token sends
// 4,000 distinct deployment events (1,000 services, every event a new
// version) from four goroutines, as fast as Vigil answers. Each is recorded
// (201); the store keeps deploy.max_deployments of them, the newest, and
// never lists more; vigil_deployment_info never shows more series than
// that; the deployments file is compacted back to a bounded size; /-/ready
// keeps answering; an honest `vigil deploy record` is recorded and shown
// after the flood; and a restart on the same data keeps the same bound.
func TestAttackDeploymentFlood(t *testing.T) {
	const bound = 50
	const senders, perSender, services = 4, 1000, 1000
	maxLines := 2*bound + 100 // the most lines the file holds once compacted (store.go)
	hook := newRollbackListener(t)
	v, tokens := startDeployVigil(t, hook.URL, fmt.Sprintf("  max_deployments: %d\n  series_interval: 1s\n", bound), true)
	dir := filepath.Dir(v.DataDir)
	cfg := filepath.Join(dir, "vigil.yml")
	file := filepath.Join(v.DataDir, "deployments", "deployments.jsonl")
	ci, reader := tokens[auth.ScopeDeploy], tokens[auth.ScopeRead]
	client := &http.Client{Timeout: 30 * time.Second} // a hung request fails
	probe := startReadyProbe(t, v.URL())

	// While the flood runs, a reader lists the deployments and counts the
	// info series, and the file's size is watched.
	var maxListed, maxSeries int
	var maxFile int64
	var watchErrs []string
	stopWatch, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		for {
			if l, err := listDeployments(client, v.URL(), reader); err != nil {
				watchErrs = append(watchErrs, err.Error())
			} else {
				maxListed = max(maxListed, len(l))
			}
			if s, err := infoSeries(client, v.URL(), reader, "vigil_deployment_info"); err != nil {
				watchErrs = append(watchErrs, err.Error())
			} else {
				maxSeries = max(maxSeries, len(s))
			}
			if fi, err := os.Stat(file); err == nil {
				maxFile = max(maxFile, fi.Size())
			}
			select {
			case <-stopWatch:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	var mu sync.Mutex
	statuses := map[int]int{}
	var failures []string
	var wg sync.WaitGroup
	began := time.Now()
	for g := range senders {
		wg.Go(func() {
			for i := range perSender {
				// The senders deploy different services at once; each
				// service gets a new version every 250 events.
				n := i*senders + g
				body := fmt.Sprintf(`{"service":"flood-%03d","environment":"production","version":"v%d","previousVersion":"v%d","pipeline":"https://ci.example/flood/%d","commit":"%040x"}`,
					n%services, n, n-services, n, n)
				req, _ := http.NewRequest(http.MethodPost, v.URL()+"/api/v1/deployments", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+ci)
				resp, err := client.Do(req)
				mu.Lock()
				if err != nil {
					failures = append(failures, err.Error())
				} else {
					statuses[resp.StatusCode]++
					if resp.StatusCode != http.StatusCreated && len(failures) < 10 {
						b, _ := io.ReadAll(resp.Body)
						failures = append(failures, fmt.Sprintf("%d %.200s", resp.StatusCode, b))
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	flood := time.Since(began)
	close(stopWatch)
	<-watched
	probe.check(t)
	if v.Exited() {
		t.Fatalf("Vigil exited under the flood:\n%s", tail(v.Logs(), 4000))
	}
	t.Logf("%d events in %s: statuses %v; at most %d deployments listed, %d vigil_deployment_info series; the file peaked at %d bytes",
		senders*perSender, flood.Round(time.Millisecond), statuses, maxListed, maxSeries, maxFile)
	if statuses[http.StatusCreated] != senders*perSender {
		t.Errorf("statuses %v, want %d × 201 (every event a new deployment); failures: %q", statuses, senders*perSender, failures)
	}
	if len(watchErrs) > 0 {
		t.Errorf("the read API failed %d times under the flood: %q", len(watchErrs), watchErrs[:min(len(watchErrs), 5)])
	}
	if maxListed > bound {
		t.Errorf("GET /api/v1/deployments listed %d deployments under the flood, more than deploy.max_deployments (%d)", maxListed, bound)
	}
	if maxSeries > bound {
		t.Errorf("vigil_deployment_info had %d series under the flood, more than deploy.max_deployments (%d)", maxSeries, bound)
	}
	// The same at every 100 ms of the flood, as the TSDB recorded it.
	if s, err := infoSeries(client, v.URL(), reader, `max_over_time(count(vigil_deployment_info)[2m:100ms]) > `+strconv.Itoa(bound)); err != nil || len(s) != 0 {
		t.Errorf("count(vigil_deployment_info) exceeded %d in the last 2 minutes (%v)", bound, err)
	}

	// checkBounded asserts what the flood left: the newest bound
	// deployments, their current ones as series, a compacted file.
	checkBounded := func(t *testing.T, v *peers.Vigil, when string) []deployRecord {
		t.Helper()
		list, err := listDeployments(client, v.URL(), reader)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != bound {
			t.Errorf("%s: %d deployments listed, want deploy.max_deployments (%d)", when, len(list), bound)
		}
		var want []string
		eventually(t, 10*time.Second, when+": vigil_deployment_info shows the current deployment of each service kept", func() bool {
			got, err := infoSeries(client, v.URL(), reader, "vigil_deployment_info")
			want = currentOf(list)
			return err == nil && strings.Join(got, ",") == strings.Join(want, ",")
		})
		if len(want) > bound {
			t.Errorf("%s: %d info series, more than %d", when, len(want), bound)
		}
		// The file is compacted on every series_interval once it holds more
		// than 2 × the records kept + 100 lines; what it holds then is one
		// line per record kept.
		line, _ := json.Marshal(struct{ Deployment deployRecord }{list[0]})
		var size, lines int
		var ids map[string]bool
		eventually(t, 10*time.Second, when+": the deployments file compacted", func() bool {
			size, lines, ids = fileLines(t, file)
			return lines <= maxLines
		})
		// A line holds the fields listed and a few more (source, start,
		// finish, pipeline, commit): twice the listed ones is ample.
		if limit := maxLines * 2 * len(line); size > limit {
			t.Errorf("%s: the deployments file holds %d bytes, more than %d lines of %d bytes", when, size, maxLines, 2*len(line))
		}
		for _, d := range list {
			if !ids[d.ID] {
				t.Errorf("%s: deployment %s (%s %s) is listed but not in the file", when, d.ID, d.Service, d.Version)
			}
		}
		t.Logf("%s: %d deployments listed, %d info series; the file: %d lines, %d bytes", when, len(list), len(want), lines, size)
		return list
	}

	checkBounded(t, v, "after the flood")

	// The file is rewritten only once it holds more than 2 × the records
	// kept + 100 lines: a few more events fill it up to that, so that the
	// restart replays records the bound must drop again.
	_, lines, _ := fileLines(t, file)
	for i := range maxLines - 1 - lines {
		if code, _, body := httpDo(t, client, "POST", v.URL()+"/api/v1/deployments", ci,
			fmt.Sprintf(`{"service":"late-%03d","environment":"production","version":"v1"}`, i)); code != http.StatusCreated {
			t.Fatalf("event %d after the flood: %d %s", i, code, body)
		}
	}

	// An honest pipeline records a deployment after the flood; it is the
	// newest, so it is kept and shown.
	ciEnv := []string{"VIGIL_SERVER=" + v.URL(), "VIGIL_BEARER_TOKEN_FILE=" + filepath.Join(dir, "ci.token")}
	if out, errOut, code := runVigilEnv(t, ciEnv, "deploy", "record", "--service", "checkout", "--version", "v2", "--previous-version", "v1",
		"--environment", "production"); code != 0 {
		t.Fatalf("deploy record after the flood: exit %d\n%s%s", code, out, errOut)
	}
	honest := func(t *testing.T, v *peers.Vigil, when string) {
		t.Helper()
		s, err := infoSeries(client, v.URL(), reader, `vigil_deployment_info{service="checkout",environment="production"}`)
		if err != nil || strings.Join(s, ",") != "checkout v2" {
			t.Errorf("%s: vigil_deployment_info of checkout: %v %v, want checkout v2", when, s, err)
		}
		code, b, err := authGet(client, v.URL()+"/api/v1/deployments?service=checkout", reader)
		if err != nil || code != 200 || !strings.Contains(string(b), `"version":"v2"`) {
			t.Errorf("%s: GET /api/v1/deployments?service=checkout: %d %.300s %v", when, code, b, err)
		}
	}
	honest(t, v, "after the flood")
	before := checkBounded(t, v, "before the restart")
	if _, lines, ids := fileLines(t, file); lines != maxLines || len(ids) <= bound {
		t.Fatalf("before the restart the file holds %d lines naming %d deployments, want %d lines naming more than %d", lines, len(ids), maxLines, bound)
	}

	// A restart on the same data reloads the same deployments, no more.
	if err := v.Stop(30 * time.Second); err != nil {
		t.Logf("stop: %v", err)
	}
	v = peers.StartVigilAt(t, v.Addrs(), v.DataDir, "--config", cfg)
	probe = startReadyProbe(t, v.URL())
	after := checkBounded(t, v, "after a restart")
	probe.check(t)
	honest(t, v, "after a restart")
	ids := func(l []deployRecord) string {
		var s []string
		for _, d := range l {
			s = append(s, d.ID)
		}
		sort.Strings(s)
		return strings.Join(s, ",")
	}
	if ids(before) != ids(after) {
		t.Errorf("the deployments kept changed across the restart:\nbefore %s\nafter  %s", ids(before), ids(after))
	}
	if c := hook.Calls(); len(c) != 0 {
		t.Errorf("the rollback webhook was called: %q", c)
	}
}
