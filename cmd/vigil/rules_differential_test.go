package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"go.yaml.in/yaml/v3"

	"github.com/vigilhq/vigil/alerting/rulegen"
	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/internal/peers"
)

// TestGeneratedRulesDifferential loads the rules `vigil gen rules` writes
// for the example catalog into Vigil and into Debian's Prometheus, feeds
// both the same 70 minutes of span metrics (a canary v2 of checkout that
// fails and is slow next to v1, and a cart whose errors start late), and
// checks both produce the same recording-rule series and the same alerts.
func TestGeneratedRulesDifferential(t *testing.T) {
	cat, err := catalog.Load("../../catalog/testdata/catalog.yml")
	if err != nil {
		t.Fatal(err)
	}
	files, err := rulegen.Generate(cat, rulegen.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Both start without rules (rule results written at "now" would make the
	// older samples below out of bounds for the TSDB head), are fed, and
	// then load the rules by a reload.
	rulesGlob := filepath.Join(dir, "*.rules.yml")
	// The test writes span metrics and deployments by remote_write as
	// Vigil's collector replicas do, so Vigil accepts them from it.
	promCfg, vigilCfg := "global:\n  scrape_interval: 1h\n  evaluation_interval: 1s\n", "global:\n  evaluation_interval: 1s\ningest:\n  accept_derived_series_from: [anonymous]\n"
	var promCfgPath string
	prom := peers.StartPrometheus(t, func(string) string { return promCfg },
		"--web.enable-remote-write-receiver", "--enable-feature=native-histograms", "--web.enable-lifecycle")
	promCfgPath = filepath.Join(prom.Dir, "prometheus.yml")
	cfg := filepath.Join(dir, "vigil.yml")
	writeFile(t, cfg, vigilCfg)
	v := peers.StartVigil(t, filepath.Join(dir, "data"), "--config.file", cfg)

	// One request per 15s step, oldest first, so neither TSDB sees a sample
	// older than its head allows.
	end := time.Now().Truncate(15 * time.Second)
	start := end.Add(-70 * time.Minute)
	checkout := []string{"service", "checkout", "namespace", "shop", "environment", "production"}
	cart := []string{"service", "cart", "namespace", "shop", "environment", "production", "cluster", "eu-1"}
	calls := func(svc []string, version, status string, v float64, ts time.Time) prompb.TimeSeries {
		l := append(append([]string{}, svc...), "version", version, "span_kind", "SPAN_KIND_SERVER", "span_name", "GET /", "status_code", status)
		return gauge(rulegen.CallsMetric, v, ts, l...)
	}
	durations := func(svc []string, version string, bucket int32, perBucket float64, count uint64, ts time.Time) prompb.TimeSeries {
		l := append(append([]string{}, svc...), "version", version, "span_kind", "SPAN_KIND_SERVER", "span_name", "GET /")
		s := gauge(rulegen.DurationMetric, 0, ts, l...)
		s.Samples = nil
		s.Histograms = []prompb.Histogram{{
			Count:          &prompb.Histogram_CountInt{CountInt: count},
			Sum:            float64(count) * perBucket,
			Schema:         0,
			ZeroThreshold:  1e-128,
			ZeroCount:      &prompb.Histogram_ZeroCountInt{ZeroCountInt: 0},
			PositiveSpans:  []prompb.BucketSpan{{Offset: bucket, Length: 1}},
			PositiveDeltas: []int64{int64(count)},
			Timestamp:      ts.UnixMilli(),
		}}
		return s
	}
	for i := 0; !start.Add(time.Duration(i) * 15 * time.Second).After(end); i++ {
		ts := start.Add(time.Duration(i) * 15 * time.Second)
		n := float64(i)
		cartErrs := math.Max(0, n-240) * 40 // errors in the last 10 minutes only
		req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			gauge(rulegen.DeployInfo, 1, ts, append(append([]string{}, checkout...), "version", "v2", "previous_version", "v1")...),
			calls(checkout, "v1", "STATUS_CODE_OK", 59*n, ts),
			calls(checkout, "v1", "STATUS_CODE_ERROR", 1*n, ts),
			calls(checkout, "v2", "STATUS_CODE_OK", 45*n, ts),
			calls(checkout, "v2", "STATUS_CODE_ERROR", 15*n, ts),
			// v1 answers in (0.125s, 0.25s], v2 in (0.5s, 1s].
			durations(checkout, "v1", -2, 0.2, uint64(60*i), ts),
			durations(checkout, "v2", 0, 0.8, uint64(60*i), ts),
			calls(cart, "v1", "STATUS_CODE_OK", 50*n, ts),
			calls(cart, "v1", "STATUS_CODE_ERROR", cartErrs, ts),
		}}
		remoteWrite(t, v.URL(), req)
		remoteWrite(t, prom.URL(), req)
	}

	withRules := fmt.Sprintf("rule_files: [%q]\n", rulesGlob)
	writeFile(t, promCfgPath, promCfg+withRules)
	writeFile(t, cfg, vigilCfg+withRules)
	for _, base := range []string{v.URL(), prom.URL()} {
		resp, err := http.Post(base+"/-/reload", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("reload %s: %s", base, resp.Status)
		}
	}

	// Wait until both have evaluated every group at least three times since
	// the data arrived (ALERTS is written from the second evaluation on).
	fed := time.Now()
	for _, base := range []string{v.URL(), prom.URL()} {
		eventually(t, 30*time.Second, "three rule evaluations at "+base, func() bool {
			_, r := apiGet(t, base, "/api/v1/rules", nil)
			var d struct {
				Groups []struct {
					LastEvaluation time.Time `json:"lastEvaluation"`
				} `json:"groups"`
			}
			if err := json.Unmarshal(r.Data, &d); err != nil || len(d.Groups) == 0 {
				return false
			}
			for _, g := range d.Groups {
				if g.LastEvaluation.Before(fed.Add(3 * time.Second)) {
					return false
				}
			}
			return true
		})
	}

	// Live evaluation: the same recording-rule series and the same alerts.
	// Values are not compared here: each engine evaluates at its own
	// instants, and a rate's extrapolation depends on where its window ends.
	at := time.Now().Add(time.Second)
	for _, q := range []string{`{__name__=~"slo:.+|vigil:.+"}`, `ALERTS`} {
		got, want := vectorOf(t, v.URL(), q, at), vectorOf(t, prom.URL(), q, at)
		if len(want) == 0 {
			t.Fatalf("Prometheus has no %s: the test data is wrong", q)
		}
		for k := range want {
			if _, ok := got[k]; !ok {
				t.Errorf("%s: Prometheus has %s, Vigil has not", q, k)
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("%s: Vigil has %s, Prometheus has not", q, k)
			}
		}
		t.Logf("%s: the same %d series in both", q, len(want))
	}

	// Every generated expression evaluated at the same instant (the last
	// sample) gives the same values on both engines.
	compared := 0
	for _, f := range files {
		if strings.HasSuffix(f.Name, ".test.yml") {
			continue
		}
		var rf rulegen.RuleFile
		if err := yaml.Unmarshal(f.Content, &rf); err != nil {
			t.Fatal(err)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				got, want := vectorOf(t, v.URL(), r.Expr, end), vectorOf(t, prom.URL(), r.Expr, end)
				if len(got) != len(want) {
					t.Errorf("%s%s at the last sample: %d series in Vigil, %d in Prometheus", r.Record, r.Alert, len(got), len(want))
				}
				for k, pv := range want {
					vv, ok := got[k]
					switch {
					case !ok:
						t.Errorf("%s%s %s = %s in Prometheus, missing in Vigil", r.Record, r.Alert, k, pv)
					case strings.Contains(r.Expr, "histogram_quantile"):
						// Prometheus 3 (whose engine Vigil embeds) interpolates
						// within a native histogram's exponential buckets
						// exponentially; Prometheus 2.42 linearly.
						if !within(vv, pv, 0.01) {
							t.Errorf("%s %s = %s in Vigil, %s in Prometheus 2.42: more than the interpolation difference", r.Record, k, vv, pv)
						}
					case !closeEnough(vv, pv):
						t.Errorf("%s%s %s = %s in Vigil, %s in Prometheus", r.Record, r.Alert, k, vv, pv)
					}
				}
				compared += len(want)
			}
		}
	}
	t.Logf("%d values of generated expressions agree", compared)
	if compared < 30 {
		t.Errorf("only %d values compared: the test data does not exercise the rules", compared)
	}

	// And the alerts are the ones the data calls for.
	alerts := vectorOf(t, v.URL(), `ALERTS`, at)
	for _, want := range []string{
		`alertname="VigilSLOErrorBudgetBurn", alertstate="pending", environment="production", namespace="shop", service="checkout", severity="page", slo="availability"`,
		`alertname="VigilSLOErrorBudgetBurn", alertstate="pending", environment="production", namespace="shop", service="checkout", severity="page", slo="latency"`,
		`alertname="VigilSLOErrorBudgetBurn", alertstate="pending", environment="production", namespace="shop", service="cart", severity="page", slo="availability"`,
		`alertname="VigilDeployErrorRatioRegression", alertstate="pending", environment="production", namespace="shop", previous_version="v1", service="checkout", severity="critical", team="team-payments", version="v2"`,
		`alertname="VigilDeployLatencyRegression", alertstate="pending", environment="production", namespace="shop", previous_version="v1", service="checkout", severity="critical", team="team-payments", version="v2"`,
	} {
		found := false
		for k := range alerts {
			if strings.Contains(k, want[strings.Index(want, ",")+2:]) && strings.Contains(k, want[:strings.Index(want, ",")]) {
				found = true
			}
		}
		if !found {
			t.Errorf("no alert with %s; ALERTS:\n%s", want, strings.Join(keys(alerts), "\n"))
		}
	}
}

// vectorOf runs an instant query and returns value by label set.
func vectorOf(t *testing.T, base, q string, at time.Time) map[string]string {
	t.Helper()
	d := instantAt(t, base, q, at)
	var res []struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
	}
	if err := json.Unmarshal(d.Result, &res); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range res {
		var parts []string
		for k, v := range r.Metric {
			parts = append(parts, fmt.Sprintf("%s=%q", k, v))
		}
		sort.Strings(parts)
		out["{"+strings.Join(parts, ", ")+"}"] = r.Value[1].(string)
	}
	return out
}

// instantAt queries at a time with millisecond precision.
func instantAt(t *testing.T, base, q string, at time.Time) queryData {
	t.Helper()
	code, r := apiGet(t, base, "/api/v1/query", map[string][]string{"query": {q}, "time": {fmt.Sprintf("%.3f", float64(at.UnixMilli())/1000)}})
	if code != 200 {
		t.Fatalf("query %q on %s: %d %s", q, base, code, r.Error)
	}
	var d queryData
	if err := json.Unmarshal(r.Data, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// within reports whether a and b differ by at most rel of the larger.
func within(a, b string, rel float64) bool {
	fa, errA := strconv.ParseFloat(a, 64)
	fb, errB := strconv.ParseFloat(b, 64)
	return errA == nil && errB == nil && math.Abs(fa-fb) <= rel*math.Max(math.Abs(fa), math.Abs(fb))
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
