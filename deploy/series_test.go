package deploy

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/query"
	"github.com/vigilhq/vigil/storage"
)

// seriesDB is Vigil's real storage and PromQL engine, to see the series as
// instant queries (Grafana's tables and stats) see them.
type seriesDB struct {
	t      *testing.T
	store  *storage.Storage
	engine *query.Engine
}

func newSeriesDB(t *testing.T) *seriesDB {
	t.Helper()
	cfg := storage.DefaultConfig()
	cfg.Path = t.TempDir()
	st, err := storage.Open(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	e, err := query.NewEngine(query.DefaultConfig(), "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &seriesDB{t: t, store: st, engine: e}
}

// instant returns the series expr selects at ts, as "labels=value", sorted.
func (db *seriesDB) instant(expr string, ts time.Time) []string {
	db.t.Helper()
	q, err := db.engine.NewInstantQuery(context.Background(), db.store, nil, expr, ts)
	if err != nil {
		db.t.Fatal(err)
	}
	defer q.Close()
	res := q.Exec(context.Background())
	if res.Err != nil {
		db.t.Fatal(res.Err)
	}
	v, err := res.Vector()
	if err != nil {
		db.t.Fatal(err)
	}
	var out []string
	for _, s := range v {
		out = append(out, strings.TrimSuffix(strings.TrimPrefix(s.Metric.String(), "{"), "}")+"="+fmtFloat(s.F))
	}
	sort.Strings(out)
	return out
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// TestSeriesStaleAtOnce: a replaced deployment and the earlier decision of
// a verification disappear from instant queries at the next write, not
// five minutes later; a running verification has no timestamp series, a
// final one a constant one.
func TestSeriesStaleAtOnce(t *testing.T) {
	db := newSeriesDB(t)
	w := newSeriesWriter(db.store, 15*time.Second)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	ctx := context.Background()
	d := func(version, previous string, at time.Time) Deployment {
		return Deployment{Service: "checkout", Environment: "production", Version: version, PreviousVersion: previous, StartedAt: at}
	}
	v2, v3 := d("v2", "v1", t0), d("v3", "v2", t0.Add(2*time.Minute))
	running := verdict.Verdict{Service: "checkout", Environment: "production", Version: "v3", Baseline: "v2", EvaluatedAt: t0.Add(150 * time.Second),
		Judgement: verdict.Judgement{Decision: verdict.Inconclusive, Score: 0.5}}
	final := running
	final.EvaluatedAt, final.Judgement = t0.Add(4*time.Minute), verdict.Judgement{Decision: verdict.Promote, Score: 1, Final: true}

	steps := []struct {
		at      time.Duration
		current []Deployment
		verdict *verdict.Verdict
		// What instant queries see just after the write.
		info, started, verdicts, times []string
	}{
		{at: 0, current: []Deployment{v2},
			info:    []string{`__name__="vigil_deployment_info", environment="production", previous_version="v1", service="checkout", version="v2"=1`},
			started: []string{`__name__="vigil_deployment_started_timestamp_seconds", environment="production", service="checkout", version="v2"=` + fmtFloat(float64(t0.Unix()))}},
		{at: 2 * time.Minute, current: []Deployment{v3},
			info:    []string{`__name__="vigil_deployment_info", environment="production", previous_version="v2", service="checkout", version="v3"=1`},
			started: []string{`__name__="vigil_deployment_started_timestamp_seconds", environment="production", service="checkout", version="v3"=` + fmtFloat(float64(v3.StartedAt.Unix()))}},
		{at: 150 * time.Second, current: []Deployment{v3}, verdict: &running,
			verdicts: []string{`__name__="vigil_verdict_info", baseline="v2", decision="inconclusive", environment="production", service="checkout", version="v3"=0.5`}},
		{at: 4 * time.Minute, current: []Deployment{v3}, verdict: &final,
			verdicts: []string{`__name__="vigil_verdict_info", baseline="v2", decision="promote", environment="production", service="checkout", version="v3"=1`},
			times:    []string{`__name__="vigil_verdict_timestamp_seconds", decision="promote", environment="production", service="checkout", version="v3"=` + fmtFloat(float64(final.EvaluatedAt.Unix()))}},
		{at: 5 * time.Minute, current: []Deployment{v3},
			verdicts: []string{`__name__="vigil_verdict_info", baseline="v2", decision="promote", environment="production", service="checkout", version="v3"=1`},
			times:    []string{`__name__="vigil_verdict_timestamp_seconds", decision="promote", environment="production", service="checkout", version="v3"=` + fmtFloat(float64(final.EvaluatedAt.Unix()))}},
	}
	for _, st := range steps {
		now := t0.Add(st.at)
		if st.verdict != nil {
			w.setVerdict(*st.verdict)
		}
		if err := w.write(ctx, st.current, now); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			expr string
			want []string
		}{
			{"vigil_deployment_info", st.info},
			{"vigil_deployment_started_timestamp_seconds", st.started},
			{"vigil_verdict_info", st.verdicts},
			{"vigil_verdict_timestamp_seconds", st.times},
		} {
			if c.want == nil {
				continue
			}
			if got := db.instant(c.expr, now.Add(time.Second)); strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("at +%s, %s:\n  %s\nwant\n  %s", st.at, c.expr, strings.Join(got, "\n  "), strings.Join(c.want, "\n  "))
			}
		}
	}

	// After a restart the writer takes up where the last one stopped: the
	// deployment recorded next replaces v3 at once.
	w = newSeriesWriter(db.store, 15*time.Second)
	w.restore([]Deployment{v3}, []verdict.Verdict{final})
	now := t0.Add(6 * time.Minute)
	v4 := d("v4", "v3", now)
	if err := w.write(ctx, []Deployment{v4}, now); err != nil {
		t.Fatal(err)
	}
	if got := db.instant(`vigil_deployment_info`, now.Add(time.Second)); len(got) != 1 || !strings.Contains(got[0], `version="v4"`) {
		t.Errorf("after a restart and a new deployment: %v, want v4 only", got)
	}
}

// TestSeriesBoundedUnderConcurrentEvents: deployment events recorded from
// several goroutines at once (a flood, issue 14) each re-write the series;
// afterwards vigil_deployment_info shows exactly the current deployment of
// each service kept — never more than max_deployments — and the writer
// remembers only the series of its last write.
func TestSeriesBoundedUnderConcurrentEvents(t *testing.T) {
	db := newSeriesDB(t)
	cfg := DefaultConfig()
	cfg.MaxDeployments = 10
	h, err := New(Options{Config: cfg, Dir: t.TempDir(), Out: db.store, Querier: PromQL{Engine: db.engine, Queryable: db.store}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	const senders, perSender = 4, 150
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			for i := range perSender {
				n := g*perSender + i
				d := Deployment{Service: fmt.Sprintf("svc-%d", n%40), Environment: "production", Version: fmt.Sprintf("v%d", n), StartedAt: time.Now(), Source: FormatGeneric}
				d.assignID()
				if _, _, err := h.RecordDeployment(context.Background(), d); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	var want []string
	for _, d := range h.Store().Current() {
		want = append(want, d.Service+" "+d.Version)
	}
	sort.Strings(want)
	var got []string
	for _, s := range db.instant(DeploymentInfo, time.Now().Add(time.Second)) {
		got = append(got, labelValue(s, "service")+" "+labelValue(s, "version"))
	}
	sort.Strings(got)
	if len(want) == 0 || len(want) > cfg.MaxDeployments {
		t.Fatalf("%d current deployments, want 1..%d", len(want), cfg.MaxDeployments)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("%d %s series after %d concurrent events, want the %d current deployments:\n got  %v\n want %v",
			len(got), DeploymentInfo, senders*perSender, len(want), got, want)
	}
	h.series.mu.Lock()
	started := len(h.series.started)
	h.series.mu.Unlock()
	if started != len(want) {
		t.Errorf("the writer remembers %d started series, want the %d of its last write", started, len(want))
	}
}

// labelValue reads name="value" out of an instant result of seriesDB.
func labelValue(s, name string) string {
	_, v, _ := strings.Cut(s, ", "+name+`="`)
	v, _, _ = strings.Cut(v, `"`)
	return v
}
