package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/semconv"
	"github.com/vigilhq/vigil/storage"
)

// writeSpans stores cumulative server-span counters of a version every 5 s
// from from to to, perFlush requests a flush of which errRatio(ts) fail.
func writeSpans(t *testing.T, st *storage.Storage, service, version string, from, to time.Time, perFlush float64, errRatio func(time.Time) float64) {
	t.Helper()
	app := st.AppenderV2(context.Background())
	base := []string{semconv.LabelService, service, semconv.LabelEnvironment, "production", semconv.LabelVersion, version,
		semconv.LabelSpanKind, semconv.KindServer, semconv.LabelSpanName, "POST /orders"}
	ok := labels.FromStrings(append([]string{model.MetricNameLabel, semconv.SpanCalls, semconv.LabelStatusCode, "STATUS_CODE_UNSET"}, base...)...)
	bad := labels.FromStrings(append([]string{model.MetricNameLabel, semconv.SpanCalls, semconv.LabelStatusCode, semconv.StatusError}, base...)...)
	var nOK, nBad float64
	for ts := from; !ts.After(to); ts = ts.Add(5 * time.Second) {
		e := perFlush * errRatio(ts)
		nBad += e
		nOK += perFlush - e
		for _, s := range []struct {
			ls labels.Labels
			v  float64
		}{{ok, nOK}, {bad, nBad}} {
			if _, err := app.Append(0, s.ls, 0, ts.UnixMilli(), s.v, nil, nil, promstorage.AOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

func constant(r float64) func(time.Time) float64 { return func(time.Time) float64 { return r } }

// trustConfig is a short verification: 5 s steps, a 2-minute window, a
// 6-minute watch.
func trustConfig() Config {
	cfg := DefaultConfig()
	cfg.Window = model.Duration(2 * time.Minute)
	cfg.Step = model.Duration(5 * time.Second)
	cfg.RateWindow = model.Duration(10 * time.Second)
	cfg.Watch = model.Duration(6 * time.Minute)
	return cfg
}

// TestShadowMode: the same bad version of a service in shadow mode and of
// one in enforce mode. Both are judged rollback and counted by mode; the
// shadow one is recorded with wouldAct — what the webhook would have done —
// and the webhook is not called; the enforce one is acted on once.
func TestShadowMode(t *testing.T) {
	hook := newFastWebhook(t)
	clk := newClock()
	e := newHookEnv(t, envOptions{cfg: trustConfig(), webhook: hook.URL, clock: clk, catalog: `
  - name: checkout
    rollback: {mode: shadow, webhook: {url: %[1]q}}
  - name: cart
    rollback: {mode: enforce, webhook: {url: %[1]q}}
`})
	now := clk.Now()
	deployAt := now.Add(-90 * time.Second)
	ids := map[string]string{}
	for _, svc := range []string{"checkout", "cart"} {
		writeSpans(t, e.st, svc, "v1", deployAt.Add(-3*time.Minute), now, 100, constant(0.01))
		writeSpans(t, e.st, svc, "v2", deployAt, now, 100, constant(0.2))
		ids[svc] = e.record(t, svc, "v2", 90*time.Second).ID
		st := status(t, call(t, "POST", e.URL+"/api/v1/verify", `{"service":"`+svc+`","version":"v2"}`))
		if st.Phase != "rollback" || st.Verdict == nil || !strings.HasPrefix(st.Verdict.Summary, "Rollback after") {
			t.Fatalf("%s: %+v", svc, st)
		}
	}
	e.hook.acting.Wait()
	calls := hook.Calls()
	if len(calls) != 1 || !strings.Contains(calls[0], `"service":"cart"`) || !strings.Contains(calls[0], `"summary":"Rollback after`) {
		t.Fatalf("webhook calls %q, want one for cart (enforce) with the summary", calls)
	}
	shadow, _ := e.hook.Store().Get(ids["checkout"])
	if len(shadow.Actions) != 0 || len(shadow.WouldAct) != 1 {
		t.Fatalf("checkout (shadow): actions %+v, wouldAct %+v", shadow.Actions, shadow.WouldAct)
	}
	w := shadow.WouldAct[0]
	if w.Kind != "webhook" || w.Target != hook.URL || w.Refused != "" || w.OK || !strings.Contains(w.Message, "shadow mode") || !strings.Contains(w.Message, "would roll checkout back from v2 to v1") {
		t.Errorf("wouldAct %+v", w)
	}
	enforced, _ := e.hook.Store().Get(ids["cart"])
	if len(enforced.Actions) != 1 || !enforced.Actions[0].OK || len(enforced.WouldAct) != 0 {
		t.Errorf("cart (enforce): actions %+v, wouldAct %+v", enforced.Actions, enforced.WouldAct)
	}
	// The verdicts say their mode, in the API, the metrics and the series.
	for svc, mode := range map[string]string{"checkout": "shadow", "cart": "enforce"} {
		vs := e.hook.Verdicts(svc, 1)
		if len(vs) != 1 || vs[0].Mode != mode || vs[0].DeploymentID != ids[svc] || strings.HasSuffix(vs[0].Summary, "Shadow mode: recorded, not acted on.") != (mode == "shadow") {
			t.Errorf("%s verdicts %+v", svc, vs)
		}
	}
	_, body, _ := callCtx(context.Background(), "GET", e.URL+"/metrics", "")
	for _, want := range []string{`vigil_verdicts_total{decision="rollback",mode="shadow"} 1`, `vigil_verdicts_total{decision="rollback",mode="enforce"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if err := e.hook.series.write(context.Background(), e.hook.store.Current(), clk.Now()); err != nil {
		t.Fatal(err)
	}
	var series []string
	for k := range e.mem.Select(VerdictInfo) {
		series = append(series, k)
	}
	got := strings.Join(sorted(series), "\n")
	if !strings.Contains(got, `mode="enforce", service="cart"`) || !strings.Contains(got, `mode="shadow", service="checkout"`) {
		t.Errorf("verdict series:\n%s", got)
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// TestWatchAfterPromotion: a version promoted at the end of its window
// that starts failing two minutes later. The verification stays final at
// promote; the watch that follows it (phase watching) finds the regression
// and reports it as a new rollback verdict on the same deployment — acted
// on where the catalog says rollback.after_promotion, recorded as wouldAct
// elsewhere.
func TestWatchAfterPromotion(t *testing.T) {
	hook := newFastWebhook(t)
	clk := &clock{t: time.Now().Add(-30 * time.Minute).Truncate(time.Second)}
	cfg := trustConfig()
	e := newHookEnv(t, envOptions{cfg: cfg, webhook: hook.URL, clock: clk, catalog: `
  - name: checkout
    rollback: {mode: enforce, after_promotion: true, webhook: {url: %[1]q}}
  - name: cart
    rollback: {mode: enforce, webhook: {url: %[1]q}}
`})
	deployAt := clk.Now()
	failFrom := deployAt.Add(4 * time.Minute) // two minutes after the window
	end := deployAt.Add(12 * time.Minute)
	ids := map[string]string{}
	for _, svc := range []string{"checkout", "cart"} {
		writeSpans(t, e.st, svc, "v1", deployAt.Add(-3*time.Minute), deployAt.Add(-5*time.Second), 100, constant(0.01))
		writeSpans(t, e.st, svc, "v2", deployAt, end, 100, func(ts time.Time) float64 {
			if ts.Before(failFrom) {
				return 0.01
			}
			return 0.2
		})
		ids[svc] = e.record(t, svc, "v2", 0).ID
	}
	clk.Add(2 * time.Minute)
	parents := map[string]VerifyStatus{}
	for _, svc := range []string{"checkout", "cart"} {
		st := status(t, call(t, "POST", e.URL+"/api/v1/verify", `{"service":"`+svc+`","version":"v2"}`))
		if st.Phase != "promote" || !st.Final || st.Watch == nil || st.Watch.Phase != PhaseWatching {
			t.Fatalf("%s: %+v (watch %+v)", svc, st, st.Watch)
		}
		parents[svc] = st
	}
	// The watch runs in the background, step by step.
	var found time.Time
	for clk.Now().Before(end) && found.IsZero() {
		clk.Add(time.Duration(cfg.Step))
		e.hook.advanceAll()
		if st := status(t, call(t, "GET", e.URL+"/api/v1/verify/"+parents["checkout"].Watch.ID, "")); st.Final {
			found = clk.Now()
		}
	}
	if found.IsZero() || found.Before(failFrom) {
		t.Fatalf("the watch ended at %v, the regression began at %v", found, failFrom)
	}
	e.hook.advanceAll() // cart's watch sees the same at the same time
	for svc, st := range parents {
		again := status(t, call(t, "GET", e.URL+"/api/v1/verify/"+st.ID, ""))
		if again.Phase != "promote" || again.Watch == nil || again.Watch.Phase != "rollback" || !strings.HasPrefix(again.Watch.Summary, "Regression") {
			t.Errorf("%s after the watch: phase %s, watch %+v", svc, again.Phase, again.Watch)
		}
		w := status(t, call(t, "GET", e.URL+"/api/v1/verify/"+st.Watch.ID, ""))
		if w.Verdict == nil || w.Verdict.Stage != verdict.StageWatch || w.Verdict.DeploymentID != ids[svc] || w.Verdict.BaselineMode != verdict.ModeBefore {
			t.Errorf("%s watch verdict: %+v", svc, w.Verdict)
		}
	}
	t.Logf("regression from %s after the deploy, found %s after it", failFrom.Sub(deployAt), found.Sub(deployAt))
	e.hook.acting.Wait()
	calls := hook.Calls()
	if len(calls) != 1 || !strings.Contains(calls[0], `"service":"checkout"`) || !strings.Contains(calls[0], `"stage":"watch"`) {
		t.Errorf("webhook calls %q, want one for checkout (after_promotion)", calls)
	}
	cart, _ := e.hook.Store().Get(ids["cart"])
	if len(cart.Actions) != 0 || len(cart.WouldAct) != 1 || !strings.Contains(cart.WouldAct[0].Message, "rollback.after_promotion is off") {
		t.Errorf("cart: actions %+v, wouldAct %+v", cart.Actions, cart.WouldAct)
	}
	// Both verdicts of each deployment are listed.
	var stages []string
	for _, v := range e.hook.Verdicts("checkout", 0) {
		stages = append(stages, v.Stage+":"+string(v.Decision))
	}
	if got := strings.Join(sorted(stages), " "); got != "verify:promote watch:rollback" {
		t.Errorf("checkout's verdicts: %s", got)
	}
}

// TestFirstDeploy: a service's first deployment (no previous version) is
// judged against its catalog SLOs alone, and the verdict says so; without
// SLOs it cannot be verified.
func TestFirstDeploy(t *testing.T) {
	clk := newClock()
	e := newHookEnv(t, envOptions{cfg: trustConfig(), clock: clk, catalog: `
  - name: checkout
    slos: {availability: {objective: 99}}
  - name: cart
    slos: {availability: {objective: 99}}
  - name: ledger
`})
	now := clk.Now()
	deployAt := now.Add(-2 * time.Minute)
	for svc, errs := range map[string]float64{"checkout": 0.001, "cart": 0.2, "ledger": 0} {
		writeSpans(t, e.st, svc, "v1", deployAt, now, 100, constant(errs))
		r := call(t, "POST", e.URL+"/api/v1/deployments", fmt.Sprintf(`{"service":%q,"environment":"production","version":"v1","startedAt":%q}`, svc, deployAt.UTC().Format(time.RFC3339)))
		if r.code != 201 {
			t.Fatalf("record %s: %d %s", svc, r.code, r.Error)
		}
	}
	for svc, want := range map[string]verdict.Decision{"checkout": verdict.Promote, "cart": verdict.Rollback} {
		st := status(t, call(t, "POST", e.URL+"/api/v1/verify", `{"service":"`+svc+`","version":"v1"}`))
		v := st.Verdict
		if !st.Final || v == nil || v.Decision != want || v.BaselineMode != verdict.ModeNone || v.Baseline != "" ||
			!strings.HasPrefix(v.Summary, "First deploy of "+svc+": there is no previous version to compare with") {
			t.Errorf("%s: %+v\n%+v", svc, st, v)
		}
	}
	r := call(t, "POST", e.URL+"/api/v1/verify", `{"service":"ledger","version":"v1"}`)
	if r.code != 400 || !strings.Contains(r.Error, "has none") {
		t.Errorf("ledger without SLOs: %d %s", r.code, r.Error)
	}
	// The next deployment compares with the first, recorded without
	// previousVersion.
	r = call(t, "POST", e.URL+"/api/v1/deployments", `{"service":"checkout","environment":"production","version":"v2"}`)
	if r.code != 201 {
		t.Fatal(r.Error)
	}
	var st VerifyStatus
	if err := json.Unmarshal(call(t, "POST", e.URL+"/api/v1/verify", `{"service":"checkout","version":"v2"}`).Data, &st); err != nil || st.Verdict == nil || st.Verdict.Baseline != "v1" {
		t.Errorf("v2 after the first deploy: %+v %v", st, err)
	}
}
