package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/internal/memstore"
	"github.com/vigilhq/vigil/query"
	"github.com/vigilhq/vigil/storage"
)

// clock is a test clock that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// slowWebhook is a real rollback webhook on 127.0.0.1 that blocks every
// call until released (as a webhook that takes its 30 s would).
type slowWebhook struct {
	*httptest.Server
	entered chan string // the body of each call, when it arrives
	release chan struct{}
	once    sync.Once
	calls   atomic.Int32
}

// Release lets every call, blocked or to come, answer.
func (w *slowWebhook) Release() { w.once.Do(func() { close(w.release) }) }

func newSlowWebhook(t *testing.T) *slowWebhook {
	w := &slowWebhook{entered: make(chan string, 16), release: make(chan struct{})}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.calls.Add(1)
		w.entered <- string(b)
		select {
		case <-w.release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() {
		w.Release()
		w.Close()
	})
	return w
}

// fastWebhook is a real rollback webhook on 127.0.0.1 that records the
// calls and answers at once.
type fastWebhook struct {
	*httptest.Server
	mu    sync.Mutex
	calls []string
}

func newFastWebhook(t *testing.T) *fastWebhook {
	w := &fastWebhook{}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.mu.Lock()
		w.calls = append(w.calls, string(b))
		w.mu.Unlock()
	}))
	t.Cleanup(w.Close)
	return w
}

func (w *fastWebhook) Calls() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.calls...)
}

// hookEnv is a hook over Vigil's real storage and PromQL engine, served by
// a real HTTP server, with a test clock and a registry.
type hookEnv struct {
	*httptest.Server
	hook  *Hook
	clock *clock
	reg   *prometheus.Registry
	dir   string
	st    *storage.Storage
	mem   *memstore.Store // the deployment and verdict series
	stop  func()          // stops the server, the hook and the storage (once)
	// as is the principal requests are authenticated as (nil: none, as
	// when authentication is off).
	as atomic.Pointer[auth.Principal]
}

type envOptions struct {
	cfg     Config
	webhook string // the rollback webhook of the catalog's services ("": no catalog)
	querier func(PromQL) verdict.Querier
	dir     string // reuse a data directory (a restart)
	clock   *clock
	// catalog replaces the catalog's services (YAML under services:, %[1]s
	// standing for the webhook's URL).
	catalog string
}

func newHookEnv(t *testing.T, o envOptions) *hookEnv {
	t.Helper()
	e := &hookEnv{clock: o.clock, reg: prometheus.NewRegistry(), dir: o.dir}
	if e.clock == nil {
		e.clock = newClock()
	}
	if e.dir == "" {
		e.dir = t.TempDir()
	}
	cfg := o.cfg
	if o.catalog != "" {
		cat := filepath.Join(e.dir, "catalog.yml")
		services := o.catalog
		if strings.Contains(services, "%[1]") {
			services = fmt.Sprintf(services, o.webhook)
		}
		if err := os.WriteFile(cat, []byte("defaults: {environment: production}\nservices:\n"+services), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg.Catalog = cat
	} else if o.webhook != "" {
		cat := filepath.Join(e.dir, "catalog.yml")
		if err := os.WriteFile(cat, []byte(fmt.Sprintf(`
defaults: {environment: production}
services:
  - name: checkout
    rollback: {automatic: true, webhook: {url: %q}}
  - name: cart
    rollback: {automatic: true, webhook: {url: %q}}
  - name: ledger
    rollback: {webhook: {url: %q}}
`, o.webhook, o.webhook, o.webhook)), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg.Catalog = cat
	}
	scfg := storage.DefaultConfig()
	scfg.Path = filepath.Join(e.dir, "data")
	st, err := storage.Open(scfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.st = st
	qcfg := query.DefaultConfig()
	qcfg.MaxSamples = 100000
	eng, err := query.NewEngine(qcfg, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var q verdict.Querier = PromQL{Engine: eng, Queryable: st}
	if o.querier != nil {
		q = o.querier(PromQL{Engine: eng, Queryable: st})
	}
	e.mem = memstore.New()
	h, err := New(Options{Config: cfg, Dir: scfg.Path, Out: e.mem, Querier: q, Actors: []Actor{WebhookActor{}},
		Registerer: e.reg, Now: e.clock.Now, AllowActions: o.webhook != ""})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	e.hook = h
	mux := http.NewServeMux()
	h.Register(principalMux{mux})
	mux.Handle("GET /metrics", promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{}))
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := e.as.Load(); p != nil {
			r = r.WithContext(auth.NewContext(r.Context(), *p))
		}
		mux.ServeHTTP(w, r)
	}))
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			e.Close()
			h.Close()
			st.Close()
		})
	}
	t.Cleanup(e.stop)
	return e
}

// principalMux registers the hook's routes without checking scopes: the
// tests set the principal themselves (hookEnv.as), as auth.Mux would after
// checking a token (its scope checks are tested in internal/auth).
type principalMux struct{ *http.ServeMux }

func (m principalMux) Handle(pattern string, _ auth.Scope, h http.Handler, _ ...auth.RouteOption) {
	m.ServeMux.Handle(pattern, h)
}

// record records a deployment of service version (baseline v1) that
// started ago before the clock's now.
func (e *hookEnv) record(t *testing.T, service, version string, ago time.Duration) Deployment {
	t.Helper()
	at := e.clock.Now().Add(-ago).UTC().Format(time.RFC3339)
	r := call(t, "POST", e.URL+"/api/v1/deployments", fmt.Sprintf(`{"service":%q,"environment":"production","version":%q,"previousVersion":"v1","startedAt":%q}`, service, version, at))
	if r.code/100 != 2 {
		t.Fatalf("record %s %s: %d %s", service, version, r.code, r.Error)
	}
	var d Deployment
	if err := json.Unmarshal(r.Data, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func status(t *testing.T, r reply) VerifyStatus {
	t.Helper()
	var st VerifyStatus
	if err := json.Unmarshal(r.Data, &st); err != nil {
		t.Fatalf("%d %s: %v", r.code, r.Data, err)
	}
	return st
}

// callCtx is call with a context: a call that hangs fails the test
// instead of hanging it.
func callCtx(ctx context.Context, method, url, body string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// ciPrincipal is a CI pipeline's token: the deploy scope.
var ciPrincipal = auth.Principal{Name: "ci", Scopes: []auth.Scope{auth.ScopeDeploy}}

// criticalConfig has an operator-controlled critical signal that fails as
// soon as there are samples: every verification ends in a rollback.
func criticalConfig() Config {
	cfg := DefaultConfig()
	zero := 0.0
	cfg.Signals = []verdict.Signal{{Name: "forced", Query: "vector(1)", Max: &zero, Critical: true}}
	return cfg
}

// TestSlowActorBlocksNothing: while a rollback webhook hangs, /metrics,
// new verifications, verdict listings, deployment listings and status
// polls all answer.
func TestSlowActorBlocksNothing(t *testing.T) {
	hook := newSlowWebhook(t)
	e := newHookEnv(t, envOptions{cfg: criticalConfig(), webhook: hook.URL})
	e.as.Store(&ciPrincipal)
	e.record(t, "checkout", "v2", 2*time.Minute)
	e.record(t, "cart", "v2", 2*time.Minute)

	// The verdict is reached in the request; the action starts behind it
	// and hangs (for up to its 30 s). The request itself answers while the
	// webhook hangs.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type answer struct {
		code int
		body string
		err  error
	}
	first := make(chan answer, 1)
	go func() {
		code, body, err := callCtx(ctx, "POST", e.URL+"/api/v1/verify", `{"service":"checkout","version":"v2"}`)
		first <- answer{code, body, err}
	}()
	body := <-hook.entered // the webhook is now blocked
	if !strings.Contains(body, `"service":"checkout"`) {
		t.Fatalf("webhook body %s", body)
	}
	a := <-first
	if a.err != nil || a.code != http.StatusCreated || !strings.Contains(a.body, `"phase":"rollback"`) {
		t.Fatalf("verify while its action hangs: %d %v %.300s", a.code, a.err, a.body)
	}
	var env struct{ Data VerifyStatus }
	if err := json.Unmarshal([]byte(a.body), &env); err != nil {
		t.Fatal(err)
	}
	st := env.Data
	calls := []struct {
		name, method, path, body string
		code                     int
		want                     string
	}{
		{"metrics scrape", "GET", "/metrics", "", 200, "vigil_verifications_running"},
		{"status poll of the verification acting", "GET", "/api/v1/verify/" + st.ID, "", 200, `"phase":"rollback"`},
		{"new verification", "POST", "/api/v1/verify", `{"service":"ledger","version":"v9","baseline":"v8"}`, 201, `"phase":"running"`},
		{"verdict listing", "GET", "/api/v1/verdicts", "", 200, `"service":"checkout"`},
		{"deployment listing", "GET", "/api/v1/deployments", "", 200, `"service":"cart"`},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			code, body, err := callCtx(ctx, c.method, e.URL+c.path, c.body)
			if err != nil || code != c.code || !strings.Contains(body, c.want) {
				t.Errorf("%s %s while the webhook hangs: %d %v, want %d with %q\n%.400s", c.method, c.path, code, err, c.code, c.want, body)
			}
		})
	}
	// A second rollback verdict of another service, reached while the
	// first action hangs, is acted on too: actions do not queue behind
	// each other (cart is another service: no cool-down).
	if code, body, err := callCtx(ctx, "POST", e.URL+"/api/v1/verify", `{"service":"cart","version":"v2"}`); err != nil || !strings.Contains(body, `"phase":"rollback"`) {
		t.Fatalf("cart: %d %v %.300s", code, err, body)
	}
	if body := <-hook.entered; !strings.Contains(body, `"service":"cart"`) {
		t.Fatalf("second webhook body %s", body)
	}
	hook.Release()
	e.hook.acting.Wait()
	if n := hook.calls.Load(); n != 2 {
		t.Errorf("webhook called %d times, want 2", n)
	}
	d, _ := e.hook.Store().Latest("checkout", "production")
	if len(d.Actions) != 1 || !d.Actions[0].OK || d.Actions[0].Principal != "ci" {
		t.Errorf("actions recorded = %+v", d.Actions)
	}
}

// gatedQuerier blocks the first query of an evaluation until released, and
// counts the evaluations in flight.
type gatedQuerier struct {
	next             verdict.Querier
	entered, release chan struct{}
	inflight, most   atomic.Int32
}

func (g *gatedQuerier) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]verdict.Point, error) {
	// Every evaluation queries the span metrics (first the canary traffic).
	if strings.Contains(expr, "span_kind") {
		n := g.inflight.Add(1)
		defer g.inflight.Add(-1)
		for {
			m := g.most.Load()
			if n <= m || g.most.CompareAndSwap(m, n) {
				break
			}
		}
		select {
		case g.entered <- struct{}{}:
		default:
		}
		select {
		case <-g.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.next.QueryRange(ctx, expr, start, end, step)
}

// TestSingleFlightEvaluation: while a verification's evaluation is in
// flight, polls, repeated requests and the background loop return what
// is known instead of evaluating it again.
func TestSingleFlightEvaluation(t *testing.T) {
	g := &gatedQuerier{entered: make(chan struct{}, 1), release: make(chan struct{})}
	e := newHookEnv(t, envOptions{cfg: DefaultConfig(), querier: func(p PromQL) verdict.Querier { g.next = p; return g }})
	e.record(t, "checkout", "v2", 2*time.Minute)

	first := make(chan reply, 1)
	go func() { first <- call(t, "POST", e.URL+"/api/v1/verify", `{"service":"checkout","version":"v2"}`) }()
	<-g.entered // the first evaluation is in flight
	ids := e.hook.allJobs()
	if len(ids) != 1 {
		t.Fatalf("%d jobs", len(ids))
	}
	id := ids[0].id
	e.clock.Add(time.Hour) // however much later: the evaluation in flight is the one
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			code, body, err := callCtx(ctx, "GET", e.URL+"/api/v1/verify/"+id, "")
			if err != nil || code != 200 || !strings.Contains(body, `"phase":"running"`) {
				t.Errorf("poll during an evaluation: %d %v %s", code, err, body)
			}
		})
		wg.Go(func() {
			code, body, err := callCtx(ctx, "POST", e.URL+"/api/v1/verify", `{"service":"checkout","version":"v2"}`)
			if err != nil || code != 200 || !strings.Contains(body, id) {
				t.Errorf("repeated verify during an evaluation: %d %v %s", code, err, body)
			}
		})
	}
	wg.Go(e.hook.advanceAll)
	wg.Wait()
	if n := g.most.Load(); n != 1 {
		t.Errorf("%d evaluations of one verification ran at once, want 1", n)
	}
	close(g.release)
	if r := <-first; r.code != http.StatusCreated {
		t.Errorf("first verify: %d %s", r.code, r.Error)
	}
}

// TestErrorVerdict: a verification whose evaluations keep failing ends,
// after deploy.max_evaluation_errors of them in a row, with a final error
// verdict that is recorded and never acted on.
func TestErrorVerdict(t *testing.T) {
	for _, maxErrs := range []int{1, 3} {
		t.Run(fmt.Sprint(maxErrs), func(t *testing.T) {
			hook := newFastWebhook(t)
			cfg := DefaultConfig()
			cfg.MaxEvaluationErrors = maxErrs
			// Parses, but the engine refuses it when run.
			cfg.Signals = []verdict.Signal{{Name: "bad", Query: `label_replace(up{$selector}, "x", "$1", "y", "(")`, Critical: true}}
			e := newHookEnv(t, envOptions{cfg: cfg, webhook: hook.URL})
			e.record(t, "checkout", "v2", 2*time.Minute)
			r := call(t, "POST", e.URL+"/api/v1/verify", `{"service":"checkout","version":"v2"}`)
			st := status(t, r)
			for i := 1; i < maxErrs; i++ {
				if st.Final || !strings.Contains(st.Error, "signal bad") {
					t.Fatalf("after %d errors: %+v", i, st)
				}
				// A poll within half a step does not evaluate again.
				if again := status(t, call(t, "GET", e.URL+"/api/v1/verify/"+st.ID, "")); again.Final {
					t.Fatalf("a quick poll counted as another error")
				}
				e.clock.Add(time.Duration(cfg.Step))
				st = status(t, call(t, "GET", e.URL+"/api/v1/verify/"+st.ID, ""))
			}
			if !st.Final || st.Phase != "error" || st.Decision != verdict.Error || st.Verdict == nil || !strings.Contains(st.Verdict.Reason, "signal bad") {
				t.Fatalf("after %d errors: %+v", maxErrs, st)
			}
			if v := e.hook.Store().Verdicts("checkout", 0); len(v) != 1 || v[0].Decision != verdict.Error {
				t.Errorf("recorded verdicts %+v", v)
			}
			e.hook.acting.Wait()
			if c := hook.Calls(); len(c) != 0 {
				t.Errorf("an error verdict was acted on: %q", c)
			}
			if got := testMetric(t, e, "vigil_verifications_running"); got != "0" {
				t.Errorf("running = %s", got)
			}
		})
	}
}

// testMetric scrapes e's registry for the value of a metric without labels.
func testMetric(t *testing.T, e *hookEnv, name string) string {
	t.Helper()
	_, body, err := callCtx(context.Background(), "GET", e.URL+"/metrics", "")
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return ""
}

// TestJobExpiry: a verification with no final verdict by its window's end
// and a grace ends with an error verdict; final ones are forgotten after a
// day (their verdicts stay listed).
func TestJobExpiry(t *testing.T) {
	e := newHookEnv(t, envOptions{cfg: DefaultConfig()})
	st, created, err := e.hook.StartVerification(context.Background(), auth.Anonymous, VerifyRequest{Service: "checkout", Version: "v2", Baseline: "v1", Window: "5m"})
	if err != nil || !created || st.Final {
		t.Fatalf("start: %+v %v %v", st, created, err)
	}
	tests := []struct {
		after time.Duration
		phase string
		known bool
	}{
		{4 * time.Minute, "running", true},
		{10*time.Minute - time.Second, "running", true},
		{10*time.Minute + time.Second, "error", true}, // 5m window + 5m grace
		{25 * time.Hour, "", false},
	}
	start := e.clock.Now()
	for _, tc := range tests {
		e.clock.Add(start.Add(tc.after).Sub(e.clock.Now()))
		e.hook.expireJobs()
		j, ok := e.hook.getJob(st.ID)
		if ok != tc.known {
			t.Fatalf("after %s: known=%v, want %v", tc.after, ok, tc.known)
		}
		if !ok {
			continue
		}
		if got := j.status(); got.Phase != tc.phase {
			t.Errorf("after %s: phase %q (%s), want %q", tc.after, got.Phase, got.Verdict.Reason, tc.phase)
		}
	}
	if v := e.hook.Verdicts("checkout", 0); len(v) != 1 || v[0].Decision != verdict.Error || !strings.Contains(v[0].Reason, "no final verdict") {
		t.Errorf("verdicts after expiry: %+v", v)
	}
	if got := testMetric(t, e, "vigil_verifications_running"); got != "0" {
		t.Errorf("running = %s", got)
	}
}

// TestRequestSignalRules: a verify request's critical, alert and bounded
// signals need the deploy scope (403) and deploy.allow_request_signals
// (400); plain signals are judged, but a verdict that relies on them is
// acted on only when both hold.
func TestRequestSignalRules(t *testing.T) {
	var (
		anonymous = &auth.Anonymous
		reader    = &auth.Principal{Name: "grafana", Scopes: []auth.Scope{auth.ScopeRead}}
		ci        = &auth.Principal{Name: "ci", Scopes: []auth.Scope{auth.ScopeDeploy}}
	)
	signals := map[string]string{
		"plain":    `{"name":"q","query":"vector(1)"}`,
		"critical": `{"name":"x","query":"vector(1)","critical":true}`,
		"max":      `{"name":"x","query":"vector(1)","max":0}`,
		"min":      `{"name":"x","query":"vector(1)","min":2}`,
		"alert":    `{"name":"x","query":"vector(1)","kind":"alert"}`,
	}
	tests := []struct {
		as     *auth.Principal // nil: no principal (authentication off)
		allow  bool
		signal string
		code   int
		mayAct bool
	}{
		{nil, false, "critical", 400, false},
		{nil, false, "plain", 201, false},
		{anonymous, false, "max", 400, false},
		{anonymous, false, "min", 400, false},
		{anonymous, false, "alert", 400, false},
		{ci, false, "critical", 400, false},
		{ci, false, "plain", 201, false},
		{reader, false, "critical", 403, false},
		{reader, true, "critical", 403, false},
		{reader, true, "plain", 201, false},
		{ci, true, "critical", 201, true},
		{ci, true, "max", 201, true},
		{ci, true, "plain", 201, true},
		{anonymous, true, "alert", 201, true},
	}
	for _, tc := range tests {
		name := fmt.Sprintf("%s/allow=%v/%s", principalName(tc.as), tc.allow, tc.signal)
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.AllowRequestSignals = tc.allow
			e := newHookEnv(t, envOptions{cfg: cfg})
			e.as.Store(tc.as)
			r := call(t, "POST", e.URL+"/api/v1/verify", `{"service":"checkout","version":"v2","baseline":"v1","signals":[`+signals[tc.signal]+`]}`)
			if r.code != tc.code {
				t.Fatalf("%d %s, want %d", r.code, r.Error, tc.code)
			}
			if r.code/100 != 2 {
				if !strings.Contains(r.Error, "signals[0] (x)") {
					t.Errorf("error %q does not name the signal", r.Error)
				}
				return
			}
			j, _ := e.hook.getJob(status(t, r).ID)
			if j.mayAct != tc.mayAct || j.principal != principalName(tc.as) {
				t.Errorf("mayAct=%v principal=%q, want %v %q", j.mayAct, j.principal, tc.mayAct, principalName(tc.as))
			}
		})
	}
}

func principalName(p *auth.Principal) string {
	if p == nil {
		return auth.Anonymous.Name
	}
	return p.Name
}

// TestRequestSignalsNeverAct: a rollback verdict that relies on a
// request's own signals is recorded; the action is refused and recorded.
func TestRequestSignalsNeverAct(t *testing.T) {
	hook := newFastWebhook(t)
	e := newHookEnv(t, envOptions{cfg: DefaultConfig(), webhook: hook.URL})
	e.as.Store(&ciPrincipal)
	d := e.record(t, "checkout", "v2", 2*time.Minute)
	// A queue far deeper for the canary: a plain signal of the request's,
	// no bound, no critical flag, weighted to decide the score.
	now := e.clock.Now()
	app := e.st.AppenderV2(context.Background())
	for _, s := range []struct {
		version string
		v       float64
	}{{"v1", 10}, {"v2", 1000}} {
		ls := labels.FromStrings(model.MetricNameLabel, "queue_depth", "service", "checkout", "environment", "production", "version", s.version)
		for ts := now.Add(-12 * time.Minute); !ts.After(now); ts = ts.Add(15 * time.Second) {
			if _, err := app.Append(0, ls, 0, ts.UnixMilli(), s.v, nil, nil, promstorage.AOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	r := call(t, "POST", e.URL+"/api/v1/verify", `{"service":"checkout","version":"v2","signals":[{"name":"queue","query":"max(queue_depth{$selector})","weight":100}]}`)
	st := status(t, r)
	if st.Phase != "rollback" {
		t.Fatalf("verify: %d %+v", r.code, st)
	}
	e.hook.acting.Wait()
	if c := hook.Calls(); len(c) != 0 {
		t.Errorf("acted on a request's own signals: %q", c)
	}
	rec, _ := e.hook.Store().Get(d.ID)
	if len(rec.Actions) != 1 || rec.Actions[0].Refused != RefusedRequestSignals || rec.Actions[0].OK || rec.Actions[0].Principal != "ci" {
		t.Errorf("actions = %+v, want one refused", rec.Actions)
	}
	if v := e.hook.Store().Verdicts("checkout", 0); len(v) != 1 || v[0].Decision != verdict.Rollback {
		t.Errorf("verdict not recorded: %+v", v)
	}
}

// TestStartAndWindowCaps: a request's window is capped by
// deploy.max_window, its start may not lie before the recorded deployment,
// more than one window back, or in the future — refused at once, naming
// the field.
func TestStartAndWindowCaps(t *testing.T) {
	e := newHookEnv(t, envOptions{cfg: DefaultConfig()})
	e.record(t, "checkout", "v2", 3*time.Minute)
	now := e.clock.Now()
	at := func(d time.Duration) string { return now.Add(d).UTC().Format(time.RFC3339) }
	tests := []struct {
		name, body string
		code       int
		want       string
	}{
		{"the reported attack", `{"service":"cart","version":"v2","baseline":"v1","window":"10000d","start":"1970-01-01T00:00:00Z"}`, 400, "deploy.max_window"},
		{"window over the cap", `{"service":"cart","version":"v2","baseline":"v1","window":"61m"}`, 400, "window: 61m is longer than deploy.max_window (1h)"},
		{"window at the cap", `{"service":"cart","version":"v2","baseline":"v1","window":"1h"}`, 201, ""},
		{"start in 1970", `{"service":"cart","version":"v2","baseline":"v1","start":"1970-01-01T00:00:00Z"}`, 400, "more than one window (10m) ago"},
		{"start more than a window back", `{"service":"cart","version":"v2","baseline":"v1","window":"5m","start":"` + at(-6*time.Minute) + `"}`, 400, "more than one window (5m) ago"},
		{"start within the window", `{"service":"cart","version":"v2","baseline":"v1","window":"5m","start":"` + at(-4*time.Minute) + `"}`, 201, ""},
		{"start before the recorded deployment", `{"service":"checkout","version":"v2","start":"` + at(-4*time.Minute) + `"}`, 400, "before the start of the recorded deployment"},
		{"start after the recorded deployment", `{"service":"checkout","version":"v2","start":"` + at(-2*time.Minute) + `"}`, 201, ""},
		{"start in the future", `{"service":"cart","version":"v2","baseline":"v1","start":"` + at(10*time.Minute) + `"}`, 400, "in the future"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, "POST", e.URL+"/api/v1/verify", tc.body)
			if r.code != tc.code || !strings.Contains(r.Error, tc.want) {
				t.Errorf("%d %q, want %d naming %q", r.code, r.Error, tc.code, tc.want)
			}
		})
	}
}

// TestRollbackRateLimits: at most one rollback per deployment and one per
// service within deploy.rollback_cooldown, whoever asks (a verdict or a
// person); refusals are recorded with the deployment, with who asked; the
// limits hold across a restart.
func TestRollbackRateLimits(t *testing.T) {
	hook := newFastWebhook(t)
	cfg := DefaultConfig()
	cfg.RollbackCooldown.Set("10m")
	e := newHookEnv(t, envOptions{cfg: cfg, webhook: hook.URL})
	ops := &auth.Principal{Name: "ops", Scopes: []auth.Scope{auth.ScopeAdmin}}
	e.as.Store(ops)
	v2 := e.record(t, "ledger", "v2", 30*time.Minute)
	v3 := e.record(t, "ledger", "v3", 2*time.Minute)
	other := e.record(t, "cart", "v2", 2*time.Minute)
	rollback := func(d Deployment) reply {
		return call(t, "POST", e.URL+"/api/v1/deployments/"+d.ID+"/rollback", "", "Authorization", "Bearer s3cret")
	}
	steps := []struct {
		name    string
		after   time.Duration // clock moves before the step
		d       Deployment
		code    int
		refused Refusal
	}{
		{"first rollback of a service acts", 0, v2, 200, ""},
		{"another deployment of it within the cool-down is refused", time.Minute, v3, 429, RefusedCooldown},
		{"another service is not held back", 0, other, 200, ""},
		{"the same deployment again is refused", 10 * time.Minute, v2, 409, RefusedAlreadyRolledBack},
		{"after the cool-down, the other deployment acts", 0, v3, 200, ""},
	}
	for _, s := range steps {
		e.clock.Add(s.after)
		r := rollback(s.d)
		if r.code != s.code {
			t.Fatalf("%s: %d %s, want %d", s.name, r.code, r.Error, s.code)
		}
		rec, _ := e.hook.Store().Get(s.d.ID)
		last := rec.Actions[len(rec.Actions)-1]
		if last.Refused != s.refused || last.Principal != "ops" || (s.refused == "") != last.OK {
			t.Errorf("%s: recorded %+v", s.name, last)
		}
	}
	if n := len(hook.Calls()); n != 3 {
		t.Errorf("webhook called %d times, want 3", n)
	}
	// A rollback verdict on a deployment already rolled back does not act again.
	e.stop()
	e2 := newHookEnv(t, envOptions{cfg: criticalConfig(), webhook: hook.URL, dir: e.dir, clock: e.clock})
	e2.as.Store(ops)
	if r := rollback2(t, e2, v3); r.code != 409 {
		t.Errorf("after a restart, rolling back v3 again: %d %s, want 409", r.code, r.Error)
	}
	e2.record(t, "checkout", "v2", 2*time.Minute)
	if st := status(t, call(t, "POST", e2.URL+"/api/v1/verify", `{"service":"checkout","version":"v2"}`)); st.Phase != "rollback" {
		t.Fatalf("checkout verdict %+v", st)
	}
	e2.hook.acting.Wait()
	if n := len(hook.Calls()); n != 4 {
		t.Errorf("webhook called %d times after the checkout verdict, want 4", n)
	}
}

func rollback2(t *testing.T, e *hookEnv, d Deployment) reply {
	return call(t, "POST", e.URL+"/api/v1/deployments/"+d.ID+"/rollback", "", "Authorization", "Bearer s3cret")
}

// TestAutomaticRollbackOncePerDeployment: two verifications of one
// deployment (different windows) that both end in rollback act once.
func TestAutomaticRollbackOncePerDeployment(t *testing.T) {
	hook := newFastWebhook(t)
	e := newHookEnv(t, envOptions{cfg: criticalConfig(), webhook: hook.URL})
	d := e.record(t, "checkout", "v2", 2*time.Minute)
	for _, w := range []string{"5m", "10m"} {
		if st := status(t, call(t, "POST", e.URL+"/api/v1/verify", `{"service":"checkout","version":"v2","window":"`+w+`"}`)); st.Phase != "rollback" {
			t.Fatalf("window %s: %+v", w, st)
		}
		e.hook.acting.Wait()
	}
	if n := len(hook.Calls()); n != 1 {
		t.Errorf("webhook called %d times, want 1", n)
	}
	rec, _ := e.hook.Store().Get(d.ID)
	if len(rec.Actions) != 2 || !rec.Actions[0].OK || rec.Actions[1].Refused != RefusedAlreadyRolledBack {
		t.Errorf("actions %+v", rec.Actions)
	}
}

// TestVerdictSeriesBounded: vigil_verdict_info keeps a series for at most
// deploy.max_deployments verifications; the oldest end with a staleness
// marker.
func TestVerdictSeriesBounded(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxDeployments = 3
	e := newHookEnv(t, envOptions{cfg: cfg})
	for i := range 5 {
		e.clock.Add(time.Second)
		if _, _, err := e.hook.StartVerification(context.Background(), auth.Anonymous, VerifyRequest{Service: "checkout", Version: fmt.Sprintf("v%d", i+2), Baseline: "v1"}); err != nil {
			t.Fatal(err)
		}
		e.hook.writeSeries(context.Background())
	}
	var live []string
	for k, smp := range e.mem.Select(VerdictInfo) {
		if !math.IsNaN(smp.V) {
			live = append(live, k)
		}
	}
	slices.Sort(live)
	if len(live) != 3 || !strings.Contains(live[0], `version="v4"`) || !strings.Contains(live[2], `version="v6"`) {
		t.Errorf("live verdict series:\n%s", strings.Join(live, "\n"))
	}
}
