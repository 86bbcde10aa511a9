package main

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"

	"github.com/vigilhq/vigil/internal/peers"
)

// TestDifferentialAgainstPrometheus writes the same generated series into
// Vigil and into Debian's Prometheus (as a remote_write receiver), then runs
// a table of PromQL queries against both and requires the same data, up to
// float noise of 1e-9 relative.
//
// Sample timestamps carry a 137 ms offset, and subquery ranges a 7 s one, so
// that no sample or subquery step sits exactly on a range boundary:
// Prometheus 3 (embedded in Vigil) made range selectors left-open, which
// differs from 2.x only for points exactly on the boundary. Everything else
// is expected to match.
func TestDifferentialAgainstPrometheus(t *testing.T) {
	v := peers.StartVigil(t, "")
	prom := peers.StartPrometheus(t, func(string) string { return "global:\n  scrape_interval: 1h\n" },
		"--web.enable-remote-write-receiver")

	end := time.Now().Add(-2 * time.Minute).Truncate(time.Minute)
	start := end.Add(-50 * time.Minute)
	for _, req := range generateSeries(start, end) {
		remoteWrite(t, v.URL(), req)
		remoteWrite(t, prom.URL(), req)
	}

	queries := []string{
		`http_requests_total`,
		`http_requests_total{code="500"}`,
		`http_requests_total{method=~"G.*",code!="200"}`,
		`rate(http_requests_total[5m])`,
		`irate(http_requests_total[5m])`,
		`increase(http_requests_total[10m])`,
		`sum by (code) (rate(http_requests_total[5m]))`,
		`sum without (instance) (rate(http_requests_total[5m]))`,
		`avg by (job) (rate(http_requests_total[5m]))`,
		`count by (job) (http_requests_total)`,
		`topk(2, cpu_temp_celsius)`,
		`bottomk(1, cpu_temp_celsius)`,
		`quantile(0.75, cpu_temp_celsius)`,
		`stddev(cpu_temp_celsius)`,
		`sum(rate(http_requests_total{code="500"}[5m])) / sum(rate(http_requests_total[5m]))`,
		`http_requests_total{code="500"} / ignoring(code) http_requests_total{code="200"}`,
		`sum by (instance) (rate(http_requests_total[5m])) > 0.4`,
		`cpu_temp_celsius > bool 60`,
		`histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[5m])))`,
		`histogram_quantile(0.5, sum by (le, job) (rate(request_duration_seconds_bucket[10m])))`,
		`rate(request_duration_seconds_sum[5m]) / rate(request_duration_seconds_count[5m])`,
		`avg_over_time(cpu_temp_celsius[10m])`,
		`max_over_time(cpu_temp_celsius[10m])`,
		`min_over_time(cpu_temp_celsius[10m])`,
		`quantile_over_time(0.9, cpu_temp_celsius[15m])`,
		`stddev_over_time(cpu_temp_celsius[10m])`,
		`count_over_time(cpu_temp_celsius[10m])`,
		`last_over_time(cpu_temp_celsius[10m])`,
		`delta(cpu_temp_celsius[5m])`,
		`deriv(cpu_temp_celsius[10m])`,
		`predict_linear(cpu_temp_celsius[10m], 600)`,
		`resets(http_requests_total[30m])`,
		`changes(cpu_temp_celsius[10m])`,
		`cpu_temp_celsius offset 10m`,
		`rate(http_requests_total[5m] offset 15m)`,
		`max_over_time(rate(http_requests_total[2m])[10m7s:1m])`,
		`avg_over_time(sum(cpu_temp_celsius)[15m7s:30s])`,
		`label_replace(cpu_temp_celsius, "rack", "$1", "host", "(.*)-[0-9]+")`,
		`label_join(cpu_temp_celsius, "id", "/", "host", "job")`,
		`abs(deriv(cpu_temp_celsius[5m]))`,
		`clamp(cpu_temp_celsius, 50, 60)`,
		`round(cpu_temp_celsius, 0.5)`,
		`ln(cpu_temp_celsius) * 2`,
		`timestamp(cpu_temp_celsius)`,
		`absent(nonexistent_metric)`,
		`absent_over_time(cpu_temp_celsius[5m])`,
		`scalar(sum(cpu_temp_celsius))`,
		`vector(time())`,
		`count_values("value", round(cpu_temp_celsius))`,
		`sum by (job) (http_requests_total) and on(job) count by (job) (request_duration_seconds_count)`,
		`cpu_temp_celsius unless on(host) cpu_temp_celsius{host="web-1"}`,
		`group by (job) (http_requests_total)`,
	}

	evalTimes := []time.Time{end, end.Add(-7 * time.Minute), end.Add(-23*time.Minute - 10*time.Second)}
	for _, q := range queries {
		t.Run(q, func(t *testing.T) {
			for _, ts := range evalTimes {
				want := normalize(t, instant(t, prom.URL(), q, ts))
				got := normalize(t, instant(t, v.URL(), q, ts))
				if diff := compareData(want, got); diff != "" {
					t.Errorf("instant query at %s differs: %s", ts.Format(time.RFC3339), diff)
				}
			}
			want := normalize(t, rangeQuery(t, prom.URL(), q, start.Add(15*time.Minute), end, 30*time.Second))
			got := normalize(t, rangeQuery(t, v.URL(), q, start.Add(15*time.Minute), end, 30*time.Second))
			if diff := compareData(want, got); diff != "" {
				t.Errorf("range query differs: %s", diff)
			}
			if len(want.series) == 0 && !strings.HasPrefix(q, "absent") {
				t.Errorf("Prometheus returned no data for %q: the test data does not exercise it", q)
			}
		})
	}
}

// generateSeries builds 50 minutes of 15 s samples: request counters (with a
// counter reset), a classic histogram and a gauge, one request per 5 minutes.
func generateSeries(start, end time.Time) []*prompb.WriteRequest {
	rng := rand.New(rand.NewPCG(42, 1))
	type series struct {
		labels []prompb.Label
		value  float64
		next   func(v float64, i int) float64
	}
	lbls := func(kv ...string) []prompb.Label {
		var ls []prompb.Label
		for i := 0; i < len(kv); i += 2 {
			ls = append(ls, prompb.Label{Name: kv[i], Value: kv[i+1]})
		}
		sort.Slice(ls, func(a, b int) bool { return ls[a].Name < ls[b].Name })
		return ls
	}
	var all []*series
	for _, inst := range []string{"web-1", "web-2", "web-3"} {
		for _, code := range []string{"200", "500"} {
			for _, method := range []string{"GET", "POST"} {
				rate := 1 + rng.Float64()*5
				if code == "500" {
					rate /= 20
				}
				reset := inst == "web-2" && code == "200" && method == "GET"
				all = append(all, &series{
					labels: lbls("__name__", "http_requests_total", "job", "api", "instance", inst, "code", code, "method", method),
					// Counters start far from zero for the same reason as the reset below.
					value: 1000,
					next: func(v float64, i int) float64 {
						if reset && i == 100 {
							// A reset to a value far from zero: Prometheus 2.51 changed how
							// rate() extrapolates towards zero (#13725), which would make a
							// reset to ~0 differ between 2.42 and Vigil's engine.
							return 300
						}
						return v + rate*15*(0.5+rng.Float64())
					},
				})
			}
		}
		all = append(all, &series{
			labels: lbls("__name__", "cpu_temp_celsius", "job", "node", "host", inst),
			value:  55,
			next:   func(v float64, i int) float64 { return 55 + 8*math.Sin(float64(i)/9) + rng.Float64()*3 },
		})
	}
	bounds := []string{"0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"}
	for _, job := range []string{"api", "worker"} {
		cum := make([]float64, len(bounds))
		var sum, count float64
		step := -1
		advance := func(i int) {
			if i == step {
				return
			}
			step = i
			for k := 0; k < 3+rng.IntN(5); k++ {
				obs := rng.ExpFloat64() * 0.3
				sum += obs
				count++
				for b, le := range bounds {
					ub, _ := strconv.ParseFloat(le, 64)
					if obs <= ub {
						cum[b]++
					}
				}
			}
		}
		for b, le := range bounds {
			b := b
			all = append(all, &series{
				labels: lbls("__name__", "request_duration_seconds_bucket", "job", job, "le", le),
				next:   func(_ float64, i int) float64 { advance(i); return cum[b] },
			})
		}
		all = append(all,
			&series{labels: lbls("__name__", "request_duration_seconds_sum", "job", job), next: func(_ float64, i int) float64 { advance(i); return sum }},
			&series{labels: lbls("__name__", "request_duration_seconds_count", "job", job), next: func(_ float64, i int) float64 { advance(i); return count }},
		)
	}

	var reqs []*prompb.WriteRequest
	var cur *prompb.WriteRequest
	ts := make([]prompb.TimeSeries, len(all))
	for i, s := range all {
		ts[i].Labels = s.labels
	}
	n := int(end.Sub(start) / (15 * time.Second))
	for i := 0; i <= n; i++ {
		t := start.Add(time.Duration(i)*15*time.Second + 137*time.Millisecond).UnixMilli()
		for j, s := range all {
			s.value = s.next(s.value, i)
			ts[j].Samples = append(ts[j].Samples, prompb.Sample{Value: s.value, Timestamp: t})
		}
		if i%20 == 19 || i == n {
			cur = &prompb.WriteRequest{Timeseries: slices.Clone(ts)}
			reqs = append(reqs, cur)
			for j := range ts {
				ts[j].Samples = nil
			}
		}
	}
	return reqs
}

type point struct {
	t float64
	v string
}

type normalized struct {
	resultType string
	series     map[string][]point
}

// normalize turns any result type into series key -> points, so results can
// be compared regardless of order.
func normalize(t *testing.T, d queryData) normalized {
	t.Helper()
	n := normalized{resultType: d.ResultType, series: map[string][]point{}}
	parsePoint := func(raw [2]json.RawMessage) point {
		var p point
		if err := json.Unmarshal(raw[0], &p.t); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw[1], &p.v); err != nil {
			t.Fatal(err)
		}
		return p
	}
	switch d.ResultType {
	case "vector":
		var vs []struct {
			Metric map[string]string  `json:"metric"`
			Value  [2]json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(d.Result, &vs); err != nil {
			t.Fatal(err)
		}
		for _, s := range vs {
			n.series[key(s.Metric)] = []point{parsePoint(s.Value)}
		}
	case "matrix":
		var ms []struct {
			Metric map[string]string    `json:"metric"`
			Values [][2]json.RawMessage `json:"values"`
		}
		if err := json.Unmarshal(d.Result, &ms); err != nil {
			t.Fatal(err)
		}
		for _, s := range ms {
			for _, raw := range s.Values {
				n.series[key(s.Metric)] = append(n.series[key(s.Metric)], parsePoint(raw))
			}
		}
	case "scalar":
		var raw [2]json.RawMessage
		if err := json.Unmarshal(d.Result, &raw); err != nil {
			t.Fatal(err)
		}
		n.series["scalar"] = []point{parsePoint(raw)}
	default:
		t.Fatalf("unexpected result type %q", d.ResultType)
	}
	return n
}

func key(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sb, "%s=%q,", k, m[k])
	}
	return "{" + strings.TrimSuffix(sb.String(), ",") + "}"
}

func compareData(want, got normalized) string {
	if want.resultType != got.resultType {
		return fmt.Sprintf("result type %s (Prometheus) vs %s (Vigil)", want.resultType, got.resultType)
	}
	for k := range want.series {
		if _, ok := got.series[k]; !ok {
			return fmt.Sprintf("series %s missing from Vigil", k)
		}
	}
	for k := range got.series {
		if _, ok := want.series[k]; !ok {
			return fmt.Sprintf("series %s only in Vigil", k)
		}
	}
	for k, wp := range want.series {
		gp := got.series[k]
		if len(wp) != len(gp) {
			return fmt.Sprintf("series %s: %d points (Prometheus) vs %d (Vigil)", k, len(wp), len(gp))
		}
		for i := range wp {
			if wp[i].t != gp[i].t {
				return fmt.Sprintf("series %s point %d: timestamp %v vs %v", k, i, wp[i].t, gp[i].t)
			}
			if !closeEnough(wp[i].v, gp[i].v) {
				return fmt.Sprintf("series %s at %v: %s (Prometheus) vs %s (Vigil)", k, wp[i].t, wp[i].v, gp[i].v)
			}
		}
	}
	return ""
}

func closeEnough(a, b string) bool {
	if a == b {
		return true
	}
	fa, errA := strconv.ParseFloat(a, 64)
	fb, errB := strconv.ParseFloat(b, 64)
	if errA != nil || errB != nil {
		return false
	}
	if math.IsNaN(fa) && math.IsNaN(fb) {
		return true
	}
	return math.Abs(fa-fb) <= 1e-9*math.Max(math.Abs(fa), math.Abs(fb))
}
