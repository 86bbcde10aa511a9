package streamaggr

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/vigilhq/vigil/internal/memstore"
)

func lastValue(st *memstore.Store, series string) (float64, bool) {
	smp, ok := st.Last(series)
	return smp.V, ok
}

func ruleYAML(t *testing.T, y string) RuleConfig {
	t.Helper()
	var c RuleConfig
	if err := yaml.Unmarshal([]byte(y), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func series(s string) labels.Labels {
	ls, err := labelsParser(s)
	if err != nil {
		panic(err)
	}
	return ls
}

func TestOutputs(t *testing.T) {
	out := memstore.New()
	r := ruleYAML(t, `
match: 'http_requests_total'
interval: 1m
by: [code]
outputs: [total, increase, count_samples, sum_samples, count_series, min, max, avg, last, stddev, 'quantiles(0.5, 1)']
`)
	a, err := New([]RuleConfig{r}, out, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Unix(1700000000, 0)
	a.now = func() time.Time { return clock }

	a1 := series(`http_requests_total{code="200",instance="a",version="v2"}`)
	b1 := series(`http_requests_total{code="200",instance="b",version="v2"}`)
	// Interval 1: first samples only set each counter's baseline.
	a.Push(a1, 10)
	a.Push(b1, 100)
	a.FlushAll(clock)
	// Interval 2: a rises by 5, b resets to 3 (an increase of 3).
	clock = clock.Add(time.Minute)
	a.Push(a1, 15)
	a.Push(b1, 3)
	a.FlushAll(clock)

	name := func(out string) string {
		return `{__name__="http_requests_total:1m_by_code_` + out + `", code="200", version="v2"}`
	}
	for _, tc := range []struct {
		output string
		want   float64
	}{
		{"total", 8},
		{"increase", 8},
		{"count_samples", 2},
		{"sum_samples", 18},
		{"count_series", 2},
		{"min", 3},
		{"max", 15},
		{"avg", 9},
		{"last", 3},
		{"stddev", 6},
	} {
		got, ok := lastValue(out, name(tc.output))
		if !ok || got != tc.want {
			t.Errorf("%s = %v (written %v), want %v; series: %v", tc.output, got, ok, tc.want, out.Series())
		}
	}
	for _, q := range []struct {
		phi  string
		want float64
	}{{"0.5", 9}, {"1", 15}} {
		s := `{__name__="http_requests_total:1m_by_code_quantiles", code="200", quantile="` + q.phi + `", version="v2"}`
		if got, _ := lastValue(out, s); got != q.want {
			t.Errorf("quantile %s = %v, want %v", q.phi, got, q.want)
		}
	}
}

func TestWithoutAndDropInput(t *testing.T) {
	out := memstore.New()
	a, err := New([]RuleConfig{ruleYAML(t, `
match: '{__name__="queue_depth", job="worker"}'
interval: 10s
without: [instance]
outputs: [max]
drop_input: true
`)}, out, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Unix(1700000000, 0)
	a.now = func() time.Time { return clock }
	if !a.Push(series(`queue_depth{job="worker",instance="a"}`), 4) {
		t.Error("a matched input of a drop_input rule must be dropped")
	}
	a.Push(series(`queue_depth{job="worker",instance="b"}`), 9)
	if a.Push(series(`queue_depth{job="api",instance="a"}`), 100) {
		t.Error("an input the rule does not match must be kept")
	}
	a.FlushAll(clock)
	if got, _ := lastValue(out, `{__name__="queue_depth:10s_without_instance_max", job="worker"}`); got != 9 {
		t.Errorf("max = %v; series %v", got, out.Series())
	}
	if len(out.Series()) != 1 {
		t.Errorf("outputs %v, want only the worker group", out.Series())
	}
}

func TestStalenessAndLimit(t *testing.T) {
	out := memstore.New()
	r := ruleYAML(t, `
match: 'jobs_total'
interval: 1m
by: [queue]
outputs: [total]
max_series: 2
`)
	a, err := New([]RuleConfig{r}, out, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Unix(1700000000, 0)
	a.now = func() time.Time { return clock }
	for _, q := range []string{"a", "b", "c"} {
		a.Push(series(`jobs_total{queue="`+q+`"}`), 1)
	}
	a.FlushAll(clock)
	if n := len(out.Series()); n != 2 {
		t.Fatalf("%d output series, want 2 (max_series)", n)
	}
	// Nothing arrives for longer than the staleness interval (2m): the
	// outputs get a staleness marker, so queries stop seeing them at once.
	clock = clock.Add(3 * time.Minute)
	a.FlushAll(clock)
	got, _ := lastValue(out, `{__name__="jobs_total:1m_by_queue_total", queue="a"}`)
	if !value.IsStaleNaN(got) {
		t.Errorf("after staleness: %v, want a staleness marker", got)
	}
}

func TestRunFlushesOnShutdown(t *testing.T) {
	out := memstore.New()
	a, err := New([]RuleConfig{ruleYAML(t, "match: x\ninterval: 1h\noutputs: [count_samples]")}, out, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	a.Push(series(`x{a="1"}`), 1)
	a.Push(series(`x{a="1"}`), 2)
	cancel()
	<-done
	if got, _ := lastValue(out, `{__name__="x:1h_count_samples", a="1"}`); got != 2 {
		t.Errorf("count_samples flushed at shutdown = %v, want 2", got)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct{ y, want string }{
		{"interval: 1m\noutputs: [total]", "match"},
		{"match: '{a='\ninterval: 1m\noutputs: [total]", "match"},
		{"match: x\noutputs: [total]", "interval"},
		{"match: x\ninterval: 100ms\noutputs: [total]", "at least 1s"},
		{"match: x\ninterval: 1m\nby: [a]\nwithout: [b]\noutputs: [total]", "by and without"},
		{"match: x\ninterval: 1m\noutputs: [median]", "median"},
		{"match: x\ninterval: 1m\noutputs: ['quantiles(2)']", "quantiles"},
		{"match: x\ninterval: 1m", "outputs"},
	} {
		err := ruleYAML(t, tc.y).Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to mention %q", tc.y, err, tc.want)
		}
	}
}

func TestNaming(t *testing.T) {
	for _, tc := range []struct {
		by, without []string
		want        string
	}{
		{nil, nil, ":5m"},
		{[]string{"code", "method"}, nil, ":5m_by_code_method"},
		{nil, []string{"pod", "instance"}, ":5m_without_instance_pod"},
	} {
		c := RuleConfig{Interval: model.Duration(5 * time.Minute), By: tc.by, Without: tc.without}
		if got := c.suffix(); got != tc.want {
			t.Errorf("suffix(by %v, without %v) = %q, want %q", tc.by, tc.without, got, tc.want)
		}
	}
	if q := quantile(0.5, []float64{1, 2, 3, 4}); q != 2.5 {
		t.Errorf("median of 1..4 = %v", q)
	}
	if !math.IsNaN(quantile(0.5, nil)) {
		t.Error("quantile of nothing must be NaN")
	}
}

func labelsParser(s string) (labels.Labels, error) {
	return parser.NewParser(parser.Options{}).ParseMetric(s)
}

// TestQuantileSampleOnlyForQuantiles: a rule keeps sample values (up to
// 4096 per group and interval) only when it writes quantiles; its
// self-metrics count pushes and drops all the same.
func TestQuantileSampleOnlyForQuantiles(t *testing.T) {
	for _, tc := range []struct {
		outputs string
		kept    int
	}{
		{"[avg, max]", 0},
		{"['quantiles(0.5)']", 100},
	} {
		reg := prometheus.NewRegistry()
		a, err := New([]RuleConfig{ruleYAML(t, "match: 'm'\ninterval: 1m\nmax_series: 1\noutputs: "+tc.outputs)}, memstore.New(), nil, reg)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			a.Push(series(`m{instance="a"}`), float64(i))
		}
		a.Push(series(`m{instance="b",x="y"}`), 1) // a second group past max_series
		var kept int
		for _, g := range a.rules[0].groups {
			kept += len(g.values)
		}
		if kept != tc.kept {
			t.Errorf("outputs %s: %d values kept, want %d", tc.outputs, kept, tc.kept)
		}
		if got := testutil.ToFloat64(a.pushed.WithLabelValues("0")); got != 101 {
			t.Errorf("outputs %s: %v samples counted, want 101", tc.outputs, got)
		}
		if got := testutil.ToFloat64(a.dropped.WithLabelValues("0", "max_series")); got != 1 {
			t.Errorf("outputs %s: %v samples dropped, want 1", tc.outputs, got)
		}
	}
}
