package deploy

import (
	"os"
	"path/filepath"
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
