package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/query"
	"github.com/vigilhq/vigil/storage"
)

// history is six hours of telemetry of five services with known good and
// bad deploys, some rolled back by hand, written into Vigil's storage, and
// the deployments recorded in a real store.
type history struct {
	st      *storage.Storage
	querier PromQL
	deps    []Deployment
	catalog *catalog.Catalog
	from    time.Time
	to      time.Time
	labels  []byte
	// want is each deployment's known answer: "service version@minute" →
	// truth/source and the decision the default policy must reach.
	want map[string][2]string
}

func newHistory(t testing.TB) *history {
	t.Helper()
	dir := t.TempDir()
	scfg := storage.DefaultConfig()
	scfg.Path = filepath.Join(dir, "data")
	st, err := storage.Open(scfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	qcfg := query.DefaultConfig()
	eng, err := query.NewEngine(qcfg, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &history{st: st, querier: PromQL{Engine: eng, Queryable: st}, want: map[string][2]string{}}
	t0 := time.Now().Add(-7 * time.Hour).Truncate(time.Minute)
	h.from, h.to = t0, t0.Add(6*time.Hour)
	m := func(minute int) time.Time { return t0.Add(time.Duration(minute) * time.Minute) }
	// A service's eras: version, start minute, requests a second, error
	// ratio, latency bucket; each runs until the next starts (a rolling
	// update), or overlap minutes longer (a canary).
	type step struct {
		version  string
		at       int
		rps, err float64
		lat      int32
		overlap  int
		prev     string // the deployment's previousVersion ("-": none recorded)
		truth    string // truth/source
		decision verdict.Decision
	}
	services := []struct {
		name  string
		jobs  bool
		steps []step
	}{
		{"checkout", false, []step{
			{"v1", 0, 20, 0.01, -3, 0, "-", "good/none", verdict.Promote}, // a first deploy, judged against the SLOs
			{"v2", 45, 20, 0.01, -3, 0, "v1", "good/none", verdict.Promote},
			{"v3", 90, 20, 0.10, -3, 0, "v2", "bad/rollback", verdict.Rollback}, // ten times the errors, rolled back by hand
			{"v2", 105, 20, 0.01, -3, 0, "v3", "good/none", verdict.Promote},
			{"v4", 150, 20, 0.01, -3, 0, "v2", "good/none", verdict.Promote},
			{"v5", 195, 20, 0.01, -3, 0, "v4", "good/none", verdict.Promote},
			{"v6", 240, 20, 0.01, -1, 0, "v5", "bad/rollback", verdict.Rollback}, // four times slower, rolled back by hand
			{"v5", 260, 20, 0.01, -3, 0, "v6", "good/none", verdict.Promote},
			{"v7", 300, 20, 0.01, -3, 0, "v5", "good/none", verdict.Promote},
		}},
		{"cart", false, []step{
			{"v1", -15, 10, 0.01, -3, 0, "", "", ""},
			{"v2", 0, 10, 0.01, -3, 0, "v1", "good/none", verdict.Promote},
			{"v3", 60, 10, 0.01, -1, 15, "v2", "bad/rollback", verdict.Rollback}, // a slow canary next to v2
			{"v2", 90, 10, 0.01, -3, 0, "v3", "good/none", verdict.Promote},
			{"v4", 150, 10, 0.01, -3, 0, "v2", "good/none", verdict.Promote},
			{"v5", 210, 10, 0.01, -3, 0, "v4", "good/none", verdict.Promote},
		}},
		{"search", false, []step{
			{"v1", -15, 15, 0.01, -3, 0, "", "", ""},
			{"v2", 0, 15, 0.01, -3, 0, "v1", "good/none", verdict.Promote},
			{"v3", 120, 15, 0.06, -3, 0, "v2", "bad/alert", verdict.Rollback}, // not rolled back, but a critical alert fired
			{"v4", 180, 15, 0.01, -3, 0, "v3", "good/none", verdict.Promote},
		}},
		{"ledger", false, []step{
			{"v1", -15, 10, 0.01, -3, 0, "", "", ""},
			{"v2", 0, 10, 0.01, -3, 0, "v1", "good/none", verdict.Promote},
			{"v3", 90, 10, 0.08, -3, 0, "v2", "bad/label", verdict.Rollback}, // labelled bad by the user
			{"v4", 150, 10, 0.01, -3, 0, "v3", "good/none", verdict.Promote},
			{"v5", 240, 10, 0.01, -3, 0, "v4", "good/label", verdict.Promote}, // rolled back by hand for another reason: labelled good
			{"v4", 260, 10, 0.01, -3, 0, "v5", "good/none", verdict.Promote},
		}},
		{"mailer", true, []step{ // a queue consumer: jobs, no HTTP traffic
			{"v1", -15, 5, 0.01, 0, 0, "", "", ""},
			{"v2", 0, 5, 0.01, 0, 0, "v1", "good/none", verdict.Promote},
			{"v3", 100, 5, 0.10, 0, 0, "v2", "bad/rollback", verdict.Rollback},
			{"v2", 130, 5, 0.01, 0, 0, "v3", "good/none", verdict.Promote},
			{"v4", 240, 5, 0.01, 0, 0, "v2", "good/none", verdict.Promote},
		}},
		{"billing", false, []step{ // a first deploy without SLOs: skipped
			{"v1", 30, 5, 0.01, -3, 0, "-", "", ""},
		}},
	}
	var hist []serviceHistory
	store, err := OpenStore(filepath.Join(dir, "deployments"), DefaultStoreLimits(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, s := range services {
		sh := serviceHistory{name: s.name, jobs: s.jobs}
		for i, st := range s.steps {
			end := h.to
			if i+1 < len(s.steps) {
				end = m(s.steps[i+1].at + st.overlap).Add(-5 * time.Second)
			}
			sh.eras = append(sh.eras, era{version: st.version, from: m(st.at), to: end, rps: st.rps, errRatio: st.err, latBucket: st.lat})
			if st.prev == "" {
				continue // running before the history: not a recorded deployment
			}
			d := Deployment{Service: s.name, Environment: "production", Version: st.version, StartedAt: m(st.at), Source: FormatGeneric}
			if st.prev != "-" {
				d.PreviousVersion = st.prev
			}
			d.assignID()
			rec, created, err := store.Record(d)
			if err != nil || !created {
				t.Fatalf("record %s %s: created %v, %v", s.name, st.version, created, err)
			}
			if st.truth != "" {
				h.want[fmt.Sprintf("%s %s@%d", s.name, st.version, st.at)] = [2]string{st.truth, string(st.decision)}
			}
			if s.name == "ledger" && st.version == "v5" {
				h.labels = append(h.labels, fmt.Sprintf("id,label\n%s,good\n", rec.ID)...)
			}
		}
		hist = append(hist, sh)
	}
	h.labels = append(h.labels, fmt.Sprintf("ledger,v3,%s,bad\n", m(90).UTC().Format(time.RFC3339))...)
	writeHistory(t, st, 1, m(-15), h.to, hist, []firingAlert{{service: "search", from: m(125), to: m(150)}})
	h.deps = store.List("", "", 0)
	cat, err := catalog.Parse([]byte(`
defaults: {environment: production}
services:
  - name: checkout
    slos: {availability: {objective: 98}}
  - name: cart
  - name: search
  - name: ledger
  - name: billing
  - name: mailer
    signals: {requests: jobs_processed_total, errors: jobs_failed_total, unit: jobs}
`))
	if err != nil {
		t.Fatal(err)
	}
	h.catalog = cat
	return h
}

func (h *history) backtester() Backtester {
	return Backtester{Querier: h.querier, Catalog: h.catalog, Step: 15 * time.Second, RateWindow: time.Minute}
}

func defaultBacktestPolicy() BacktestPolicy {
	c := DefaultConfig()
	return BacktestPolicy{Name: "current", Window: c.Window, Policy: c.Policy}
}

// TestBacktestKnownHistory replays six hours of history with known answers:
// every good deployment promoted, every bad one rolled back — bad by a
// human rollback, by a critical alert, or by the user's label; a label
// saying good wins over a rollback — with the truth found for each, the
// scores computed from them, a second policy side by side, and the same
// report when run again.
func TestBacktestKnownHistory(t *testing.T) {
	h := newHistory(t)
	labels, err := ParseTruthLabels(bytes.NewReader(h.labels))
	if err != nil {
		t.Fatal(err)
	}
	lax := defaultBacktestPolicy()
	lax.Name, lax.Policy.MinRequests = "lax", 1e9 // never enough traffic: only critical failures decide
	opts := BacktestOptions{From: h.from, To: h.to, RollbackWithin: time.Hour, Labels: labels, Policies: []BacktestPolicy{defaultBacktestPolicy(), lax}}
	rep, err := h.backtester().Run(context.Background(), h.deps, opts)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, d := range rep.Deployments {
		key := fmt.Sprintf("%s %s@%d", d.Service, d.Version, int(d.Start.Sub(h.from).Minutes()))
		want, ok := h.want[key]
		if !ok {
			t.Errorf("%s replayed, not expected", key)
			continue
		}
		seen[key] = true
		r := d.Results[0]
		if got := d.Truth.Label + "/" + d.Truth.Source; got != want[0] {
			t.Errorf("%s: truth %s (%s), want %s", key, got, d.Truth.Detail, want[0])
		}
		if string(r.Decision) != want[1] || !r.Final {
			t.Errorf("%s: %s (final %v) after %.0fs, want %s: %s", key, r.Decision, r.Final, r.Seconds, want[1], r.Summary)
		}
		if r.Decision == verdict.Rollback && (len(r.Failing) == 0 || !strings.Contains(r.Summary, "Rollback after")) {
			t.Errorf("%s: a rollback without failing signals or summary: %+v", key, r)
		}
		// Under the lax policy only a broken SLO (checkout's) or a critical
		// alert (search's) decides.
		wantLax := verdict.Inconclusive
		if key == "checkout v3@90" || key == "search v3@120" {
			wantLax = verdict.Rollback
		}
		if lr := d.Results[1]; lr.Decision != wantLax || lr.Policy != "lax" {
			t.Errorf("%s under the lax policy: %+v, want %s", key, lr, wantLax)
		}
	}
	for k := range h.want {
		if !seen[k] {
			t.Errorf("%s was not replayed", k)
		}
	}
	if len(rep.Skipped) != 1 || rep.Skipped[0].Service != "billing" || !strings.Contains(rep.Skipped[0].Reason, "no SLO") {
		t.Errorf("skipped: %+v, want billing's first deploy", rep.Skipped)
	}
	cur := rep.Scores[0].Overall
	if cur.Deployments != 26 || cur.Bad != 6 || cur.TruePositives != 6 || cur.FalsePositives != 0 || cur.Missed != 0 ||
		*cur.Precision != 1 || *cur.Recall != 1 || *cur.FalseRollbackRate != 0 || cur.MedianSeconds == nil || *cur.P95Seconds > 600 {
		t.Errorf("scores of the current policy: %+v", cur)
	}
	if s := rep.Scores[0].Services["checkout"]; s.Deployments != 9 || s.Bad != 2 || *s.Recall != 1 {
		t.Errorf("checkout's scores: %+v", s)
	}
	if l := rep.Scores[1].Overall; l.Rollbacks != 2 || *l.Recall != 2.0/6 || *l.Precision != 1 || l.Inconclusive != 24 || l.Missed != 4 {
		t.Errorf("scores of the lax policy: %+v", l)
	}
	// The same history replayed again gives the same report.
	again, err := h.backtester().Run(context.Background(), h.deps, opts)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(rep)
	b, _ := json.Marshal(again)
	if !bytes.Equal(a, b) {
		t.Errorf("a second run differs:\n%s\n%s", a, b)
	}
}

func TestParseTruthLabels(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"id,label\nabc,good\ndef, BAD\n", "abc::good def::bad", ""},
		{"service,version,start,label\ncheckout,v3,2026-11-20T10:00:00Z,bad\ncart,v2,,good\n", "checkout:v3:2026-11-20T10:00:00Z:bad cart:v2::good", ""},
		{"abc,maybe\n", "", `label "maybe" is not good or bad`},
		{"a,b,c\n", "", "3 fields"},
		{"checkout,v3,yesterday,bad\n", "", "not an RFC 3339 time"},
		{",v3,,bad\n", "", "no deployment id"},
		{"\"abc,good\n", "", "labels:"},
	} {
		ls, err := ParseTruthLabels(strings.NewReader(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		var got []string
		for _, l := range ls {
			start := ""
			if !l.Start.IsZero() {
				start = l.Start.UTC().Format(time.RFC3339)
			}
			if l.ID != "" {
				got = append(got, l.ID+"::"+l.Label)
			} else {
				got = append(got, l.Service+":"+l.Version+":"+start+":"+l.Label)
			}
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%q: %v, want %s", tc.in, got, tc.want)
		}
	}
}

func TestParseBacktestPolicy(t *testing.T) {
	def := defaultBacktestPolicy()
	p, err := ParseBacktestPolicy("strict", []byte("window: 5m\npolicy:\n  alpha: 0.01\nsignals:\n  - {name: q, query: 'max(queue_depth{$selector})', max: 100}\n"), def)
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "strict" || p.Window != model.Duration(5*time.Minute) || p.Policy.Alpha != 0.01 || p.Policy.Beta != def.Policy.Beta || len(p.Signals) != 1 {
		t.Errorf("policy: %+v", p)
	}
	for _, tc := range []struct{ in, err string }{
		{"policy: {alfa: 0.01}", "alfa"},
		{"policy: {alpha: 0.9}", "policy strict: policy.alpha must be in (0, 0.5)"},
		{"window: -5m", "window"},
		{"signals: [{name: x}]", "signals[0]: signal x: query is required"},
	} {
		if _, err := ParseBacktestPolicy("strict", []byte(tc.in), def); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
		}
	}
}

func FuzzParseTruthLabels(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/fuzz/labels/*.csv")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ls, err := ParseTruthLabels(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, l := range ls {
			if (l.Label != TruthGood && l.Label != TruthBad) || (l.ID == "" && (l.Service == "" || l.Version == "")) {
				t.Fatalf("accepted a bad label: %+v", l)
			}
		}
	})
}

func FuzzParseBacktestPolicy(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/fuzz/policy/*.yml")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	def := defaultBacktestPolicy()
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseBacktestPolicy("fuzz", b, def)
		if err != nil {
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("accepted an invalid policy: %v", err)
		}
	})
}

// BenchmarkBacktest replays 1,000 recorded deployments (100 services, ten
// deployments each, 20 minutes apart, one in ten bad) over synthetic
// history in Vigil's real storage, with the default policy: the cost of a
// backtest per 1,000 deployments.
func BenchmarkBacktest(b *testing.B) {
	dir := b.TempDir()
	scfg := storage.DefaultConfig()
	scfg.Path = filepath.Join(dir, "data")
	st, err := storage.Open(scfg, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	eng, err := query.NewEngine(query.DefaultConfig(), "", nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now().Add(-5 * time.Hour).Truncate(time.Minute)
	var hist []serviceHistory
	var deps []Deployment
	for s := range 100 {
		name := fmt.Sprintf("svc%03d", s)
		sh := serviceHistory{name: name}
		sh.eras = append(sh.eras, era{version: "v0", from: t0.Add(-15 * time.Minute), to: t0.Add(-5 * time.Second), rps: 10, errRatio: 0.01, latBucket: -3})
		for i := range 10 {
			v := fmt.Sprintf("v%d", i+1)
			from := t0.Add(time.Duration(i*20) * time.Minute)
			e := era{version: v, from: from, to: from.Add(20*time.Minute - 5*time.Second), rps: 10, errRatio: 0.01, latBucket: -3}
			if (s+i)%10 == 0 {
				e.errRatio = 0.08
			}
			sh.eras = append(sh.eras, e)
			d := Deployment{Service: name, Environment: "production", Version: v, PreviousVersion: fmt.Sprintf("v%d", i), StartedAt: from, Source: FormatGeneric}
			d.assignID()
			deps = append(deps, d)
		}
		hist = append(hist, sh)
	}
	writeHistory(b, st, 1, t0.Add(-15*time.Minute), t0.Add(200*time.Minute), hist, nil)
	bt := Backtester{Querier: PromQL{Engine: eng, Queryable: st}, Step: 15 * time.Second, RateWindow: time.Minute}
	opts := BacktestOptions{From: t0, To: t0.Add(200 * time.Minute), Policies: []BacktestPolicy{defaultBacktestPolicy()}}
	var rep BacktestReport
	for b.Loop() {
		if rep, err = bt.Run(context.Background(), deps, opts); err != nil {
			b.Fatal(err)
		}
	}
	s := rep.Scores[0].Overall
	if s.Deployments != 1000 {
		b.Fatalf("%d deployments replayed", s.Deployments)
	}
	b.ReportMetric(float64(s.Rollbacks), "rollbacks")
}
