package logmetrics

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/value"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/vigilhq/vigil/collector"
	"github.com/vigilhq/vigil/internal/memstore"
	"github.com/vigilhq/vigil/internal/semconv"
)

func TestSeverity(t *testing.T) {
	for _, tc := range []struct {
		num  int32
		text string
		want string
	}{
		{1, "", "trace"}, {5, "", "debug"}, {9, "", "info"}, {13, "", "warn"}, {17, "", "error"}, {21, "", "fatal"}, {24, "", "fatal"},
		{0, "ERROR", "error"}, {0, "Warning", "warn"}, {0, "crit", "fatal"}, {0, " info ", "info"}, {0, "verbose", "unknown"}, {0, "", "unknown"},
	} {
		if got := SeverityFromOTLP(tc.num, tc.text); got != tc.want {
			t.Errorf("SeverityFromOTLP(%d, %q) = %q, want %q", tc.num, tc.text, got, tc.want)
		}
	}
}

func TestConsumeLogs(t *testing.T) {
	out := memstore.New()
	cfg := DefaultConfig()
	cfg.MaxLineLength = 16
	g, err := New(cfg, out, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "checkout")
	rl.Resource().Attributes().PutStr("service.version", "v2")
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	for i, sev := range []plog.SeverityNumber{plog.SeverityNumberError, plog.SeverityNumberError, plog.SeverityNumberInfo, plog.SeverityNumberFatal} {
		lr := lrs.AppendEmpty()
		lr.SetSeverityNumber(sev)
		lr.Body().SetStr(strings.Repeat("x", 10+i*10))
	}
	if err := g.ConsumeLogs(context.Background(), ld); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	g.Flush(now)
	for series, want := range map[string]float64{
		`{__name__="log_records_total", service="checkout", severity="error", version="v2"}`: 2,
		`{__name__="log_records_total", service="checkout", severity="info", version="v2"}`:  1,
		`{__name__="log_records_total", service="checkout", severity="fatal", version="v2"}`: 1,
	} {
		if s, ok := out.Last(series); !ok || s.V != want {
			t.Errorf("%s = %v (written %v), want %v; series %v", series, s.V, ok, want, out.Series())
		}
	}
	errs := g.ErrorLogs().Recent("checkout", "v2", time.Time{}, 0)
	if len(errs) != 3 {
		t.Fatalf("%d error records kept, want 3 (error and fatal)", len(errs))
	}
	for _, e := range errs {
		if len(e.Item.Body) > cfg.MaxLineLength+len("…") {
			t.Errorf("body %q longer than max_line_length", e.Item.Body)
		}
	}
	// No records for longer than expiration: a staleness marker ends the series.
	g.Flush(now.Add(time.Duration(cfg.Expiration) + time.Second))
	if s, _ := out.Last(`{__name__="log_records_total", service="checkout", severity="info", version="v2"}`); !value.IsStaleNaN(s.V) {
		t.Errorf("expired series last value %v, want a staleness marker", s.V)
	}
}

// TestDimensions: configured dimensions become labels, read from the
// record's attributes first, then its scope's and its resource's; a record
// without the attribute has no such label.
func TestDimensions(t *testing.T) {
	out := memstore.New()
	cfg := DefaultConfig()
	cfg.Dimensions = []string{"cluster", "k8s.pod.name"}
	g, err := New(cfg, out, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	ld := plog.NewLogs()
	for _, cluster := range []string{"eu-1", ""} {
		rl := ld.ResourceLogs().AppendEmpty()
		rl.Resource().Attributes().PutStr("service.name", "cart")
		rl.Resource().Attributes().PutStr("service.version", "v2")
		if cluster != "" {
			rl.Resource().Attributes().PutStr("cluster", cluster)
		}
		sl := rl.ScopeLogs().AppendEmpty()
		sl.Scope().Attributes().PutStr("k8s.pod.name", "from-scope")
		for _, pod := range []string{"cart-7f9", ""} {
			lr := sl.LogRecords().AppendEmpty()
			lr.SetSeverityNumber(plog.SeverityNumberError)
			if pod != "" {
				lr.Attributes().PutStr("k8s.pod.name", pod)
				// The record's attribute wins over the resource's.
				lr.Attributes().PutStr("cluster", "eu-2")
			}
		}
	}
	if err := g.ConsumeLogs(context.Background(), ld); err != nil {
		t.Fatal(err)
	}
	g.Flush(time.Now())
	for _, series := range []string{
		`{__name__="log_records_total", cluster="eu-2", k8s_pod_name="cart-7f9", service="cart", severity="error", version="v2"}`,
		`{__name__="log_records_total", cluster="eu-1", k8s_pod_name="from-scope", service="cart", severity="error", version="v2"}`,
		`{__name__="log_records_total", k8s_pod_name="from-scope", service="cart", severity="error", version="v2"}`,
	} {
		want := 1.0
		if strings.Contains(series, "eu-2") {
			want = 2 // both resources' records with the attribute
		}
		if s, ok := out.Last(series); !ok || s.V != want {
			t.Errorf("%s = %v (written %v), want %v; series %v", series, s.V, ok, want, out.Series())
		}
	}
	if got := len(out.Select("log_records_total")); got != 3 {
		t.Errorf("%d series, want 3: %v", got, out.Series())
	}
}

func TestConfigDimensions(t *testing.T) {
	for _, tc := range []struct {
		dims   []string
		labels string
		err    string
	}{
		{dims: nil, labels: "service namespace environment version severity collector"},
		{dims: []string{"cluster", "k8s.cluster.name"}, labels: "service namespace environment version severity collector cluster k8s_cluster_name"},
		{dims: []string{"collector"}, err: `"collector" would be the label "collector", which is already the label collector Vigil sets itself`},
		{dims: []string{""}, err: "empty attribute name"},
		{dims: []string{"severity"}, err: `"severity" would be the label "severity", which is already the label severity Vigil sets itself`},
		{dims: []string{"k8s.pod", "k8s-pod"}, err: `"k8s-pod" would be the label "k8s_pod", which is already dimension "k8s.pod"`},
	} {
		cfg := DefaultConfig()
		cfg.Dimensions = tc.dims
		err := cfg.Validate()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("dimensions %q: error %v, want %q", tc.dims, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("dimensions %q: %v", tc.dims, err)
		}
		if got := strings.Join(cfg.Labels(), " "); got != tc.labels {
			t.Errorf("dimensions %q: labels %q, want %q", tc.dims, got, tc.labels)
		}
	}
}

// TestCountersStartFromZero: a series is written as 0 just before its first
// value, once per process, so that a restarted Vigil's counter (here 5
// after 3) reads as a reset to rate() and the verdict, not as +2.
func TestCountersStartFromZero(t *testing.T) {
	out := memstore.New()
	const series = `{__name__="log_records_total", service="cart", severity="error"}`
	t0 := time.Now().Truncate(time.Second)
	type point struct {
		t int64
		v float64
	}
	run := func(records int, at time.Time) {
		g, err := New(DefaultConfig(), out, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		for range records {
			g.Observe(Record{Identity: collector.Identity{Service: "cart"}, Severity: semconv.SeverityError, Body: "x"})
		}
		g.Flush(at)
		g.Flush(at.Add(time.Second))
	}
	run(3, t0)
	run(5, t0.Add(time.Minute)) // the restarted process
	var got []point
	for _, s := range out.Samples(series) {
		got = append(got, point{s.T, s.V})
	}
	ms := t0.UnixMilli()
	want := []point{{ms - 1, 0}, {ms, 3}, {ms + 1000, 3}, {ms + 59999, 0}, {ms + 60000, 5}, {ms + 61000, 5}}
	if !slices.Equal(got, want) {
		t.Errorf("samples %v, want %v", got, want)
	}
}
