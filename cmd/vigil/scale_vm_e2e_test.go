package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/alerting/rulegen"
	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/dashboards"
	"github.com/vigilhq/vigil/internal/peers"
	"github.com/vigilhq/vigil/internal/semconv"
)

// vmCatalog is a catalog whose rules MetricsQL takes: an availability SLO
// and the deploy-health rules (a latency SLO needs native histograms and
// histogram_fraction, which VictoriaMetrics 1.79 has not).
const vmCatalog = `
defaults:
  environment: production
  namespace: shop
services:
  - name: checkout
    slos:
      availability:
        objective: 99.5
`

// TestScaledCollectorsIntoVictoriaMetrics: two collector replicas behind the
// load-balancing tier write straight to Debian's VictoriaMetrics (no Vigil
// store); the generated deploy-health and SLO rules, run unchanged by
// vmalert against it, and the generated dashboards' queries give one series
// per version, not one per replica: the regression alert fires for the bad
// canary and reaches Alertmanager, and VictoriaMetrics holds exactly the
// spans, calls between services and log records sent.
func TestScaledCollectorsIntoVictoriaMetrics(t *testing.T) {
	vm := peers.StartVictoriaMetrics(t, "", "")
	am := peers.StartAlertmanager(t, "route:\n  receiver: none\nreceivers:\n  - name: none\n")
	cfg := writeConfig(t, scaleFlush+fmt.Sprintf(`
remote_write:
  - url: http://%s/api/v1/write
    name: victoria-metrics
    queue_config:
      batch_send_deadline: 500ms
`, vm.Addr))
	var collectors []*peers.Vigil
	var otlpAddrs []string
	for i := range 2 {
		c := peers.StartVigil(t, "", "--config", cfg, "--collector.replica", fmt.Sprintf("collector-%d", i))
		collectors = append(collectors, c)
		otlpAddrs = append(otlpAddrs, c.OTLPGRPC)
	}
	lb := peers.StartOtelcolLB(t, otlpAddrs)

	// The rules, generated from the catalog, run by vmalert on VictoriaMetrics.
	dir := t.TempDir()
	catPath := filepath.Join(dir, "catalog.yml")
	if err := os.WriteFile(catPath, []byte(vmCatalog), 0o644); err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Load(catPath)
	if err != nil {
		t.Fatal(err)
	}
	files, err := rulegen.Generate(cat, rulegen.Options{For: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var ruleArgs []string
	for _, f := range files {
		if strings.HasSuffix(f.Name, ".test.yml") {
			continue
		}
		p := filepath.Join(dir, f.Name)
		if err := os.WriteFile(p, f.Content, 0o644); err != nil {
			t.Fatal(err)
		}
		ruleArgs = append(ruleArgs, "-rule="+p)
	}
	vmalertAddr := peers.FreeAddr(t)
	vmalert := peers.StartIn(t, dir, "vmalert", peers.Binary(t, "vmalert"), append(ruleArgs,
		"-datasource.url=http://"+vm.Addr, "-remoteWrite.url=http://"+vm.Addr, "-notifier.url=http://"+am.Addr,
		"-evaluationInterval=2s", "-httpListenAddr="+vmalertAddr, "-remoteWrite.flushInterval=500ms")...)
	vmalert.Addr = vmalertAddr
	vmalert.WaitHTTP(t, vmalert.URL()+"/-/healthy", 30*time.Second)

	sent := newShopSent()
	load := newShopLoad(t, sent, lb.OTLPGRPC)
	healthy := map[string]int{"v1": 50}
	for range 3 {
		load.round(40, []string{"v1"}, healthy)
	}
	// The deployment is recorded on one replica, which writes it on.
	postDeployment(t, collectors[0].URL(), `{"service":"checkout","environment":"production","version":"v2","previousVersion":"v1","strategy":"canary"}`)
	canary := map[string]int{"v1": 50, "v2": 3}
	deadline := time.Now().Add(2 * time.Minute)
	for !alertFiring(t, am.URL(), rulegen.AlertErrorRegression, "checkout", "v2") {
		if time.Now().After(deadline) {
			t.Fatalf("%s never reached Alertmanager for checkout v2\n%s", rulegen.AlertErrorRegression, vmalert.Logs())
		}
		load.round(20, []string{"v1", "v2"}, canary)
		time.Sleep(300 * time.Millisecond)
	}

	// Exactly what was sent, summed over the replicas.
	want := sent.want()
	eventually(t, 60*time.Second, "VictoriaMetrics to hold what was sent", func() bool {
		g := readShopTotals(t, vm.URL())
		return equalCounts(g.spans, want.spans) && equalCounts(g.edges, want.edges) && equalCounts(g.logs, want.logs)
	})
	if n := vector(t, vm.URL(), `count(count by (collector) (`+semconv.SpanCalls+`))`, ""); len(n) != 1 || first(n) != 2 {
		t.Errorf("span metrics from %v replicas, want 2", n)
	}

	// The recorded deploy-health series: one per version, the replicas summed.
	for _, rec := range []string{rulegen.DeployRequestRate, rulegen.DeployErrorRatio, rulegen.DeployLatencyP99} {
		got := vector(t, vm.URL(), rec+`{service="checkout"}`, "")
		if len(got) != 2 {
			t.Errorf("%s: %v, want one series per version (v1, v2)", rec, got)
		}
		for k := range got {
			if strings.Contains(k, "collector") {
				t.Errorf("%s keeps the replica label: %s", rec, k)
			}
		}
	}
	ratio := vector(t, vm.URL(), rulegen.DeployErrorRatio+`{service="checkout"}`, "version")
	if math.Abs(ratio["v2"]-1.0/3) > 0.1 || ratio["v1"] > 0.05 {
		t.Errorf("error ratio by version %v, want v2 near 1/3 (one request in three fails) and v1 near 0.02", ratio)
	}
	if sli := vector(t, vm.URL(), rulegen.SLIErrorRatio+`5m{service="checkout"}`, ""); len(sli) != 1 {
		t.Errorf("SLI error ratio: %v, want one series", sli)
	}

	// The dashboards' queries, with Grafana's variables, on VictoriaMetrics.
	ds, err := dashboards.Generate(cat, dashboards.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"__rate_interval": "1m", "__interval": "15s", "__range": "1h", "__range_s": "3600",
		"service": "checkout", "environment": "production", "version": ".*", "instance": ".*",
	}
	// What no-store mode has not got: verdicts (they run on a store) and
	// the workloads' own process metrics (this test sends none).
	noData := func(q dashboards.Query) bool {
		return strings.Contains(q.Expr, semconv.VerdictInfo) || strings.Contains(q.Expr, semconv.VerdictTimestamp) ||
			strings.Contains(q.Expr, "process_") || strings.Contains(q.Expr, "ALERTS")
	}
	// Recorded series that read recorded series (the SLO's error budget)
	// take a few evaluations to fill: ask again until every panel has data.
	var problems []string
	checked := 0
	for attempt := 0; attempt == 0 || (len(problems) > 0 && attempt < 30); attempt++ {
		if attempt > 0 {
			time.Sleep(time.Second)
		}
		problems, checked = nil, 0
		for _, d := range ds {
			if d.UID() == dashboards.SelfUID {
				continue // Vigil's own metrics, scraped by Prometheus, not a backend's business
			}
			for _, q := range dashboards.Queries(d) {
				expr := dashExpand(q.Expr, maps.Clone(vars))
				if q.Kind == "variable" {
					dashCheckVariable(t, vm.URL(), q.Title, expr)
					continue
				}
				n, finite := dashRunQuery(t, vm.URL(), expr)
				checked++
				if noData(q) {
					continue
				}
				if n == 0 || !finite {
					problems = append(problems, fmt.Sprintf("%s: %s %q %s returned no data\n  %s", d.UID(), q.Kind, q.Title, q.RefID, expr))
				}
				if q.Kind == "panel" && strings.HasSuffix(q.Title, "by version") {
					if got := vector(t, vm.URL(), expr, "version"); len(got) != 2 || n != 2 {
						problems = append(problems, fmt.Sprintf("%s %s: %d series %v, want one per version (v1, v2)\n  %s", q.Title, q.RefID, n, got, expr))
					}
				}
			}
		}
	}
	for _, p := range problems {
		t.Errorf("on VictoriaMetrics: %s", p)
	}
	if checked < 30 {
		t.Errorf("only %d dashboard queries checked", checked)
	}
}

// alertFiring reports whether Alertmanager holds a firing alert of that
// name for service and version.
func alertFiring(t *testing.T, amURL, name, service, version string) bool {
	t.Helper()
	resp, err := http.Get(amURL + "/api/v2/alerts?" + url.Values{"filter": {fmt.Sprintf("alertname=%q", name)}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var alerts []struct {
		Labels map[string]string `json:"labels"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&alerts); err != nil {
		t.Fatal(err)
	}
	for _, a := range alerts {
		if a.Labels["service"] == service && a.Labels["version"] == version {
			return true
		}
	}
	return false
}

func first(m map[string]float64) float64 {
	for _, v := range m {
		return v
	}
	return math.NaN()
}
