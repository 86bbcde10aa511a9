package ui

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigilhq/vigil/deploy"
	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/auth"
)

// These tests render the pages from fixed data, in this process. The pages
// against a real Vigil with real traffic, in a real browser, are tested in
// cmd/vigil (TestWebUIInChromium).

// fixedDeployments serves fixed deployments and verdicts.
type fixedDeployments struct {
	deps     []deploy.Deployment
	verdicts []verdict.Verdict
}

func (f fixedDeployments) Deployments(string, string, int) []deploy.Deployment { return f.deps }
func (f fixedDeployments) Verdicts(string, int) []verdict.Verdict              { return f.verdicts }
func (f fixedDeployments) Verdict(id string) (verdict.Verdict, bool) {
	for _, v := range f.verdicts {
		if v.ID == id {
			return v, true
		}
	}
	return verdict.Verdict{}, false
}

// fixedQuerier answers every query with the same series, or an error.
type fixedQuerier struct {
	series []Series
	err    error
	asked  []string
}

func (q *fixedQuerier) QueryRange(_ context.Context, expr string, _, _ time.Time, _ time.Duration) ([]Series, error) {
	q.asked = append(q.asked, expr)
	return q.series, q.err
}

// routes records what Register registers, serving them through auth.Mux
// with authentication off.
type routes struct {
	*auth.Mux
	scopes map[string]auth.Scope
}

func (r *routes) Handle(p string, s auth.Scope, h http.Handler, o ...auth.RouteOption) {
	r.scopes[p] = s
	r.Mux.Handle(p, s, h, o...)
}

var at = time.Date(2026, 11, 20, 10, 5, 0, 0, time.UTC)

func fp(v float64) *float64 { return &v }

func testUI(t *testing.T, edit func(*Config)) (*httptest.Server, *routes, *fixedQuerier) {
	t.Helper()
	q := &fixedQuerier{series: []Series{{Name: `{version="v2"}`, Points: []Point{{at.Add(-time.Minute), 0.01}, {at.Add(-45 * time.Second), 0.02}, {at, 0.03}}}}}
	rollback := verdict.Verdict{
		ID: "3f2a", Service: "payments", Environment: "production", Version: "v2", Baseline: "v1", BaselineMode: "concurrent",
		Start: at.Add(-time.Minute), EvaluatedAt: at, TrafficSeconds: 60, WindowSeconds: 300,
		Judgement: verdict.Judgement{Decision: verdict.Rollback, Final: true, Reason: "error_ratio significantly worse than baseline",
			Signals: []verdict.SignalResult{
				{Name: "error_ratio", Kind: verdict.KindRatio, Status: verdict.StatusFail, Counts: &[2]verdict.Counts{{Bad: 38, Total: 920}, {Bad: 41, Total: 4500}},
					EffectSize: fp(3.5), Reason: "worse", Query: `errs{version="v2"}`, BaselineQuery: `errs{version="v1"}`},
				{Name: "critical_alerts", Kind: verdict.KindAlert, Status: verdict.StatusPass, Query: `ALERTS{service="payments"}`},
			}},
		ErrorLogs: []verdict.LogLine{
			{Body: `<script>alert(1)</script>`, Count: 3, New: true, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"},
			{Body: "from Loki", Count: 1, TraceID: `"><a href=javascript:x>`},
		},
		ErrorTraces: []verdict.TraceRef{
			{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Span: "POST /orders"},
			{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Span: "ledger.Write"},
		},
	}
	running := verdict.Verdict{ID: "77aa", Service: "cart", Version: "v9", Baseline: "v8", Start: at, EvaluatedAt: at, WindowSeconds: 300,
		Judgement: verdict.Judgement{Decision: verdict.Inconclusive, NeedSecs: 30, Reason: "too early"}}
	cfg := Config{
		Deployments: fixedDeployments{
			deps: []deploy.Deployment{{ID: "d1", Service: "payments", Environment: "production", Version: "v2", PreviousVersion: "v1", StartedAt: at.Add(-time.Minute),
				URL: "javascript:alert(1)", Actions: []deploy.ActionRecord{{At: at, Kind: "webhook", Target: "http://hook", Verdict: "3f2a", OK: true, Principal: "ci"}}}},
			verdicts: []verdict.Verdict{running, rollback},
		},
		Query: q, Metrics: prometheus.NewRegistry(), Version: "1.2.3", Step: 15 * time.Second,
		Now: func() time.Time { return at.Add(time.Minute) },
	}
	if edit != nil {
		edit(&cfg)
	}
	u, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &routes{Mux: auth.NewMux(nil, nil), scopes: map[string]auth.Scope{}}
	u.Register(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv, r, q
}

func get(t *testing.T, c *http.Client, u string) (int, http.Header, string) {
	t.Helper()
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestPages(t *testing.T) {
	srv, r, q := testUI(t, func(c *Config) { c.TraceURLTemplate = "https://tempo.example/trace/{trace_id}" })
	for p, s := range r.scopes {
		if s != auth.ScopeRead {
			t.Errorf("route %s has scope %q, want read", p, s)
		}
	}
	tests := []struct {
		path    string
		code    int
		want    []string
		notWant []string
	}{
		{"/", 200, []string{`href="/verdicts/3f2a"`, ">rollback<", "rolled back by webhook", ">running<"}, []string{`href="javascript:`}},
		{"/verdicts/3f2a", 200, []string{
			"payments v2 in production", `id="decision">rollback<`, "4.1% (38 of 920)", "0.91% (41 of 4,500)", "&#43;350%",
			"&lt;script&gt;alert(1)&lt;/script&gt;", `href="https://tempo.example/trace/4bf92f3577b34da6a3ce929d0e0e4736"`,
			"<svg", `class="line s0"`, "v2 starts", "webhook", "done", `href="/graph?g0.end_input=`,
		}, []string{"<script>alert", `href="https://tempo.example/trace/&#34;`, `href="javascript:`, `http-equiv="refresh"`}},
		{"/verdicts/77aa", 200, []string{`http-equiv="refresh"`, "None yet: the verification is running.", "needs about 30 s more traffic"}, nil},
		{"/verdicts/nope", 404, []string{"No such verdict"}, nil},
		{"/status", 200, []string{"1.2.3", "remote_write", "otlp", "loki", "nothing received yet", "No rule files loaded"}, nil},
		{"/graph", 200, []string{`<textarea name="g0.expr"`}, []string{"<svg"}},
		{"/graph?g0.expr=rate(x[1m])&g0.range_input=1h", 200, []string{"<svg", `{version=&#34;v2&#34;}`, "0.03"}, nil},
		{"/graph?g0.expr=up&g0.tab=1", 200, []string{"Value at"}, []string{"<svg"}},
		{"/graph?g0.expr=up&g0.range_input=forever", 400, []string{`range &#34;forever&#34;`}, nil},
		{"/static/style.css", 200, []string{".badge"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			code, hdr, body := get(t, nil, srv.URL+tc.path)
			if code != tc.code {
				t.Errorf("status %d, want %d\n%s", code, tc.code, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %q", w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(body, w) {
					t.Errorf("page has %q", w)
				}
			}
			if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
		})
	}
	if len(q.asked) == 0 {
		t.Error("the verdict page ran no query for its charts")
	}
	for _, e := range q.asked {
		if strings.Contains(e, "ALERTS") {
			t.Errorf("an alert signal was charted: %s", e)
		}
	}
	// One example per trace: the client and server span of a trace are one.
	_, _, body := get(t, nil, srv.URL+"/verdicts/3f2a")
	if n := strings.Count(body, "<tr><td><a href=\"https://tempo.example/trace/4bf92f3577b34da6a3ce929d0e0e4736\">"); n != 1 {
		t.Errorf("trace listed %d times in the example traces, want once", n)
	}
}

func TestGraphQueryError(t *testing.T) {
	srv, _, q := testUI(t, nil)
	q.err = errors.New(`1:5: parse error: unclosed left parenthesis`)
	code, _, body := get(t, nil, srv.URL+"/graph?g0.expr="+url.QueryEscape("sum(x"))
	if code != 400 || !strings.Contains(body, "unclosed left parenthesis") {
		t.Errorf("bad query: %d\n%s", code, body)
	}
}

func TestGraphGoesToGrafanaExplore(t *testing.T) {
	srv, _, _ := testUI(t, func(c *Config) { c.GrafanaURL = "http://grafana.example:3000/" })
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	code, hdr, _ := get(t, c, srv.URL+"/graph?g0.expr="+url.QueryEscape(`sum(rate(x{a="b"}[5m]))`)+"&g0.tab=1")
	loc, err := url.Parse(hdr.Get("Location"))
	if code != http.StatusFound || err != nil || loc.Host != "grafana.example:3000" || loc.Path != "/explore" {
		t.Fatalf("%d Location %q", code, hdr.Get("Location"))
	}
	panes := loc.Query().Get("panes")
	if !strings.Contains(panes, `"expr":"sum(rate(x{a=\"b\"}[5m]))"`) || !strings.Contains(panes, `"uid":"vigil"`) {
		t.Errorf("panes %s", panes)
	}
}

func TestConfigValidate(t *testing.T) {
	base := Config{Deployments: fixedDeployments{}, Query: &fixedQuerier{}, Metrics: prometheus.NewRegistry()}
	for _, tc := range []struct {
		edit func(*Config)
		err  string
	}{
		{func(c *Config) {}, ""},
		{func(c *Config) { c.TraceURLTemplate = "http://jaeger:16686/trace/{trace_id}" }, ""},
		{func(c *Config) { c.TraceURLTemplate = "http://jaeger:16686/trace/" }, "must contain {trace_id}"},
		{func(c *Config) { c.TraceURLTemplate = "javascript:{trace_id}" }, "absolute http(s) URL"},
		{func(c *Config) { c.GrafanaURL = "grafana:3000" }, "absolute URL"},
		{func(c *Config) { c.Query = nil }, "no querier"},
	} {
		c := base
		tc.edit(&c)
		err := c.Validate()
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%+v: %v, want %q", c, err, tc.err)
		}
	}
}

func TestChartLayout(t *testing.T) {
	t0 := at
	c := chart{Format: func(v float64) string { return "x" }, Start: t0, End: t0.Add(2 * time.Minute), Step: 15 * time.Second,
		Series: []Series{{Name: "a", Points: []Point{{t0, 0.02}, {t0.Add(15 * time.Second), 0.16}, {t0.Add(90 * time.Second), 0.1}}}}}
	l := c.layout()
	top := l.YTicks[len(l.YTicks)-1]
	if top.Pos > l.Plot.Y+0.1 {
		t.Errorf("the top tick is at %v, below the plot's top %v: the highest value would be clipped", top.Pos, l.Plot.Y)
	}
	// A gap of more than 1.5 steps starts a new segment.
	if got := strings.Count(l.Paths[0].D, "M"); got != 2 {
		t.Errorf("path %q has %d segments, want 2", l.Paths[0].D, got)
	}
	if empty := (chart{Start: t0, End: t0.Add(time.Minute)}).layout(); empty.Empty == "" {
		t.Error("a chart without points says nothing")
	}
	for _, tc := range []struct{ lo, hi float64 }{{0, 0.16}, {0, 147.5}, {0, 1}, {-3, 7}, {0, 2.3e-5}} {
		ticks := niceTicks(tc.lo, tc.hi, 4)
		if ticks[0] > tc.lo || ticks[len(ticks)-1] < tc.hi || len(ticks) > 10 {
			t.Errorf("niceTicks(%v, %v) = %v", tc.lo, tc.hi, ticks)
		}
	}
}
