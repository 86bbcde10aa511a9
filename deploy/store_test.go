package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil/deploy/verdict"
)

func TestStoreSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	limits := DefaultStoreLimits()
	limits.Now = func() time.Time { return t0.Add(24 * time.Hour) }
	s, err := OpenStore(dir, limits, nil)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(svc, ver, prev string, at time.Time) Deployment {
		d := Deployment{Service: svc, Environment: "production", Version: ver, PreviousVersion: prev, StartedAt: at, Source: FormatGeneric}
		d.assignID()
		return d
	}
	a, created, err := s.Record(mk("checkout", "v2", "v1", t0))
	if err != nil || !created {
		t.Fatalf("record: created=%v err=%v", created, err)
	}
	// The same deployment finishing updates the record, keeping ID and start.
	done := mk("checkout", "v2", "", t0.Add(time.Minute))
	fin := t0.Add(2 * time.Minute)
	done.FinishedAt, done.Status = &fin, "success"
	upd, created, err := s.Record(done)
	if err != nil || created || upd.ID != a.ID || !upd.StartedAt.Equal(t0) || upd.PreviousVersion != "v1" || upd.Status != "success" {
		t.Fatalf("update: %+v created=%v err=%v", upd, created, err)
	}
	if _, _, err := s.Record(mk("cart", "v7", "v6", t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Record(mk("checkout", "v3", "v2", t0.Add(2*time.Hour))); err != nil {
		t.Fatal(err)
	}
	if err := s.AddAction(a.ID, ActionRecord{At: t0, Kind: "webhook", Target: "http://hook", OK: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddVerdict(verdict.Verdict{ID: "x1", Service: "checkout", Version: "v2", EvaluatedAt: t0.Add(5 * time.Minute), Judgement: verdict.Judgement{Decision: verdict.Rollback}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash mid-write leaves a torn line; it is skipped.
	f, err := os.OpenFile(filepath.Join(dir, "deployments.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"deployment":{"id":"torn","serv`)
	f.Close()

	s, err = OpenStore(dir, limits, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	list := s.List("checkout", "", 0)
	if len(list) != 2 || list[0].Version != "v3" || list[1].Version != "v2" {
		t.Fatalf("after restart: %+v", list)
	}
	if got := list[1]; got.ID != a.ID || got.Status != "success" || got.FinishedAt == nil || len(got.Actions) != 1 || got.Actions[0].Kind != "webhook" {
		t.Errorf("v2 after restart: %+v", got)
	}
	if cur := s.Current(); len(cur) != 2 {
		t.Errorf("current deployments = %d, want 2 (checkout v3, cart v7)", len(cur))
	}
	if v := s.Verdicts("checkout", 0); len(v) != 1 || v[0].Decision != verdict.Rollback {
		t.Errorf("verdicts after restart: %+v", v)
	}
	if l, ok := s.Latest("cart", "production"); !ok || l.Version != "v7" {
		t.Errorf("latest cart = %+v", l)
	}
	// Appending still works after the torn line.
	if _, _, err := s.Record(mk("cart", "v8", "v7", t0.Add(3*time.Hour))); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = OpenStore(dir, limits, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := s.Latest("cart", ""); !ok || l.Version != "v8" {
		t.Errorf("record written after a torn line was lost: latest cart = %+v", l)
	}
}

// TestStoreBounds: the store keeps deployments and verdicts within
// deploy.retention (the current deployment of each service stays) and
// deploy.max_deployments, compacts its file, and a restart keeps exactly
// the records kept.
func TestStoreBounds(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	mk := func(svc, ver string, at time.Time) Deployment {
		d := Deployment{Service: svc, Environment: "production", Version: ver, StartedAt: at, Source: FormatGeneric}
		d.assignID()
		return d
	}
	type rec struct {
		svc, ver string
		age      time.Duration // before now
	}
	tests := []struct {
		name      string
		limits    StoreLimits
		records   []rec
		verdicts  []time.Duration // ages of final verdicts of checkout
		want      []string        // service/version kept, newest first
		wantVerds int
	}{
		{"within the limits", StoreLimits{Retention: 24 * time.Hour, MaxDeployments: 10},
			[]rec{{"checkout", "v1", 3 * time.Hour}, {"checkout", "v2", time.Hour}}, []time.Duration{time.Hour}, []string{"checkout/v2", "checkout/v1"}, 1},
		{"by age, the current deployment stays", StoreLimits{Retention: 24 * time.Hour, MaxDeployments: 10},
			[]rec{{"checkout", "v1", 72 * time.Hour}, {"checkout", "v2", 48 * time.Hour}, {"cart", "v7", 30 * time.Hour}, {"checkout", "v3", time.Hour}},
			[]time.Duration{48 * time.Hour, time.Hour}, []string{"checkout/v3", "cart/v7"}, 1},
		{"by count, oldest first", StoreLimits{Retention: 24 * time.Hour, MaxDeployments: 2},
			[]rec{{"checkout", "v1", 4 * time.Hour}, {"cart", "v7", 3 * time.Hour}, {"checkout", "v2", 2 * time.Hour}, {"ledger", "v1", time.Hour}},
			[]time.Duration{4 * time.Hour, 3 * time.Hour, 2 * time.Hour}, []string{"ledger/v1", "checkout/v2"}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			now := t0
			tc.limits.Now = func() time.Time { return now }
			// Every record is written with the limits wide open, then
			// updated many times (the lines compaction removes).
			wide := StoreLimits{Retention: 1000 * time.Hour, MaxDeployments: 1000, Now: tc.limits.Now}
			s, err := OpenStore(dir, wide, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range tc.records {
				d, _, err := s.Record(mk(r.svc, r.ver, now.Add(-r.age)))
				if err != nil {
					t.Fatal(err)
				}
				for i := range 60 {
					if err := s.AddAction(d.ID, ActionRecord{At: now, Kind: "webhook", Message: fmt.Sprint(i)}); err != nil {
						t.Fatal(err)
					}
				}
			}
			for i, age := range tc.verdicts {
				if err := s.AddVerdict(verdict.Verdict{ID: fmt.Sprint(i), Service: "checkout", EvaluatedAt: now.Add(-age)}); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			linesBefore := countLines(t, dir)

			// Reopened with the limits: bounded and compacted.
			s, err = OpenStore(dir, tc.limits, nil)
			if err != nil {
				t.Fatal(err)
			}
			check := func(when string, s *Store) {
				t.Helper()
				var got []string
				for _, d := range s.List("", "", 0) {
					got = append(got, d.Service+"/"+d.Version)
					if len(d.Actions) != 60 {
						t.Errorf("%s: %s/%s has %d actions, want 60", when, d.Service, d.Version, len(d.Actions))
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Errorf("%s: deployments %v, want %v", when, got, tc.want)
				}
				if v := s.Verdicts("", 0); len(v) != tc.wantVerds {
					t.Errorf("%s: %d verdicts, want %d", when, len(v), tc.wantVerds)
				}
			}
			check("after opening", s)
			if n := countLines(t, dir); n != len(tc.want)+tc.wantVerds || n >= linesBefore {
				t.Errorf("file has %d lines after compaction (%d before), want %d", n, linesBefore, len(tc.want)+tc.wantVerds)
			}
			// Appending after a compaction goes to the new file.
			if _, _, err := s.Record(mk("search", "v1", now)); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s, err = OpenStore(dir, tc.limits, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, ok := s.Latest("search", ""); !ok {
				t.Errorf("a record appended after compaction was lost")
			}
			if n := len(s.List("", "", 0)); n > tc.limits.MaxDeployments {
				t.Errorf("%d deployments kept, max %d", n, tc.limits.MaxDeployments)
			}
		})
	}
}

// TestStoreCompactsAsItGoes: Compact (run by Hook.Run) rewrites a file grown
// by updates, and prunes what aged out since the store was opened.
func TestStoreCompactsAsItGoes(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	limits := StoreLimits{Retention: time.Hour, MaxDeployments: 100, Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }}
	s, err := OpenStore(dir, limits, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	old := Deployment{Service: "checkout", Environment: "production", Version: "v1", StartedAt: now.Add(-30 * time.Minute), Source: FormatGeneric}
	old.assignID()
	cur := Deployment{Service: "checkout", Environment: "production", Version: "v2", StartedAt: now, Source: FormatGeneric}
	cur.assignID()
	for _, d := range []Deployment{old, cur} {
		if _, _, err := s.Record(d); err != nil {
			t.Fatal(err)
		}
	}
	for range 300 {
		if err := s.AddAction(cur.ID, ActionRecord{At: now, Kind: "webhook"}); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	now = now.Add(45 * time.Minute) // v1 is now older than the retention
	mu.Unlock()
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	if n := countLines(t, dir); n != 1 {
		t.Errorf("%d lines after compaction, want 1 (checkout v2)", n)
	}
	if _, ok := s.Get(old.ID); ok {
		t.Errorf("v1 outlived the retention")
	}
	if d, ok := s.Get(cur.ID); !ok || len(d.Actions) != 300 {
		t.Errorf("v2 after compaction: %v %d actions", ok, len(d.Actions))
	}
}

func countLines(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "deployments.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// TestStoreRedeploy: v2, then v3, then v2 again (a rollback to it) are
// three deployments; events about the current one still update it, and a
// restart keeps all three.
func TestStoreRedeploy(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	limits := DefaultStoreLimits()
	limits.Now = func() time.Time { return t0.Add(time.Hour) }
	s, err := OpenStore(dir, limits, nil)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(ver, prev string, at time.Time) Deployment {
		d := Deployment{Service: "checkout", Environment: "production", Version: ver, PreviousVersion: prev, StartedAt: at, Source: FormatGeneric}
		d.assignID()
		return d
	}
	first, _, _ := s.Record(mk("v2", "v1", t0))
	if _, _, err := s.Record(mk("v3", "v2", t0.Add(10*time.Minute))); err != nil {
		t.Fatal(err)
	}
	// News of the first v2 deployment (its own start) updates it.
	late := mk("v2", "", t0)
	late.Status = "success"
	if rec, created, _ := s.Record(late); created || rec.ID != first.ID {
		t.Fatalf("an event naming the first v2's start made a new deployment: %+v", rec)
	}
	back, created, err := s.Record(mk("v2", "v3", t0.Add(25*time.Minute)))
	if err != nil || !created || back.ID == first.ID || back.PreviousVersion != "v3" {
		t.Fatalf("the rollback to v2: %+v created=%v err=%v", back, created, err)
	}
	// Its finished event (another start: now) updates the rollback, the current one.
	fin := mk("v2", "", t0.Add(27*time.Minute))
	fin.Status = "success"
	if rec, created, _ := s.Record(fin); created || rec.ID != back.ID || rec.Status != "success" {
		t.Fatalf("finishing the rollback: %+v created=%v", rec, created)
	}
	check := func(s *Store) {
		t.Helper()
		var got []string
		for _, d := range s.List("checkout", "", 0) {
			got = append(got, d.Version+"<-"+d.PreviousVersion)
		}
		if strings.Join(got, " ") != "v2<-v3 v3<-v2 v2<-v1" {
			t.Errorf("deployments newest first: %v", got)
		}
		if cur, _ := s.Latest("checkout", "production"); cur.ID != back.ID {
			t.Errorf("current deployment %s, want the rollback %s", cur.ID, back.ID)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenStore(dir, limits, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check(s)
}

// TestStoreTrimsHistory: only the newest verdicts keep their signals'
// per-step history, in memory and after a restart; older ones keep the rest.
func TestStoreTrimsHistory(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Now().Add(-time.Hour)
	s, err := OpenStore(dir, DefaultStoreLimits(), nil)
	if err != nil {
		t.Fatal(err)
	}
	n := verdictsWithHistory + 20
	for i := range n {
		v := verdict.Verdict{ID: fmt.Sprint(i), Service: "checkout", Version: fmt.Sprintf("v%d", i), EvaluatedAt: t0.Add(time.Duration(i) * time.Second)}
		v.Signals = []verdict.SignalResult{{Name: "error_ratio", Status: verdict.StatusPass, History: []verdict.Step{{At: t0, Status: verdict.StatusPending}, {At: t0, Status: verdict.StatusPass}}}}
		if err := s.AddVerdict(v); err != nil {
			t.Fatal(err)
		}
	}
	check := func(s *Store) {
		t.Helper()
		vs := s.Verdicts("checkout", 0) // newest first
		if len(vs) != n {
			t.Fatalf("%d verdicts", len(vs))
		}
		for i, v := range vs {
			if want := i < verdictsWithHistory; hasHistory(v) != want || v.Signals[0].Status != verdict.StatusPass {
				t.Fatalf("verdict %s (newest %d): history %v, want %v", v.ID, i, hasHistory(v), want)
			}
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = OpenStore(dir, DefaultStoreLimits(), nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check(s)
}
