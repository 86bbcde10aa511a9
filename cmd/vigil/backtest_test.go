package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/deploy"
	"github.com/vigilhq/vigil/deploy/verdict"
)

// TestRenderBacktest checks the backtest table a person reads against a
// golden file (refresh with go test -run TestRenderBacktest -update).
func TestRenderBacktest(t *testing.T) {
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	one, half := 1.0, 0.5
	secs45, secs600 := 45.0, 600.0
	rep := deploy.BacktestReport{From: at.Add(-24 * time.Hour), To: at, RollbackWithinSeconds: 3600,
		Policies: []deploy.BacktestPolicy{{Name: "current"}, {Name: "strict"}},
		Deployments: []deploy.BacktestDeployment{
			{ID: "a1", Service: "checkout", Environment: "production", Version: "v3", Baseline: "v2", Start: at.Add(-20 * time.Hour),
				Truth: deploy.Truth{Label: deploy.TruthBad, Source: deploy.TruthFromRollback},
				Results: []deploy.BacktestResult{{Policy: "current", Decision: verdict.Rollback, Final: true, Seconds: 45, Failing: []string{"error_ratio"}},
					{Policy: "strict", Decision: verdict.Inconclusive, Final: true, Seconds: 600}}},
			{ID: "b2", Service: "cart", Environment: "production", Version: "v9", Baseline: "v8", Start: at.Add(-10 * time.Hour),
				Truth: deploy.Truth{Label: deploy.TruthGood, Source: deploy.TruthFromNothing},
				Results: []deploy.BacktestResult{{Policy: "current", Decision: verdict.Rollback, Final: true, Seconds: 60, Failing: []string{"latency_p99"}},
					{Policy: "strict", Decision: verdict.Promote, Final: true, Seconds: 120}}},
		},
		Skipped: []deploy.SkippedDeployment{{ID: "c3", Service: "billing", Version: "v1", Reason: "no previous version, and no SLO in the catalog to judge a first deploy against"}},
		Scores: []deploy.PolicyScores{
			{Policy: "current", Overall: deploy.Scores{Deployments: 2, Bad: 1, Good: 1, Rollbacks: 2, TruePositives: 1, FalsePositives: 1, Precision: &half, Recall: &one, FalseRollbackRate: &one, MedianSeconds: &secs45, P95Seconds: &secs45},
				Services: map[string]deploy.Scores{"checkout": {Deployments: 1, Bad: 1, Rollbacks: 1, Precision: &one, Recall: &one}, "cart": {Deployments: 1, Good: 1, Rollbacks: 1, FalseRollbackRate: &one}}},
			{Policy: "strict", Overall: deploy.Scores{Deployments: 2, Bad: 1, Good: 1, Promotions: 1, Inconclusive: 1, Missed: 1, Recall: new(float64), FalseRollbackRate: new(float64), MedianSeconds: &secs600, P95Seconds: &secs600},
				Services: map[string]deploy.Scores{"checkout": {Deployments: 1, Bad: 1, Inconclusive: 1}, "cart": {Deployments: 1, Good: 1, Promotions: 1}}},
		},
	}
	var b bytes.Buffer
	renderBacktest(&b, rep)
	golden := filepath.Join("testdata", "backtest.golden")
	if updateGolden() {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("table differs from %s:\n%s", golden, b.String())
	}
}

// TestReadDeployments reads the deployments of a remote_read backtest in
// each form the server gives them.
func TestReadDeployments(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	d1 := deploy.Deployment{ID: "a1", Service: "checkout", Version: "v2", StartedAt: at}
	d2 := deploy.Deployment{ID: "b2", Service: "cart", Version: "v9", StartedAt: at}
	list, _ := json.Marshal([]deploy.Deployment{d1, d2})
	env, _ := json.Marshal(map[string]any{"status": "success", "data": []deploy.Deployment{d1, d2}})
	d1done := d1
	d1done.Status = "success"
	var jsonl bytes.Buffer
	for _, d := range []deploy.Deployment{d1, d2, d1done} {
		line, _ := json.Marshal(map[string]any{"deployment": d})
		jsonl.Write(append(line, '\n'))
	}
	line, _ := json.Marshal(map[string]any{"verdict": verdict.Verdict{ID: "x"}})
	jsonl.Write(append(line, '\n'))
	for name, body := range map[string][]byte{"list.json": list, "envelope.json": env, "deployments.jsonl": jsonl.Bytes()} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, body, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := readDeployments(p)
		if err != nil || len(got) != 2 || got[0].ID != "a1" || got[1].ID != "b2" {
			t.Errorf("%s: %+v %v", name, got, err)
		}
		if name == "deployments.jsonl" && got[0].Status != "success" {
			t.Errorf("the jsonl's last line of a deployment does not win: %+v", got[0])
		}
	}
	p := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(p, []byte("[{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readDeployments(p); err == nil || !strings.Contains(err.Error(), "bad.json") {
		t.Errorf("a broken file: %v", err)
	}
}
