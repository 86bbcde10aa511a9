package loadgen

import (
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"

	"github.com/vigilhq/vigil/collector/remotewrite"
)

var t0 = time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)

func small(mod func(*Config)) Config {
	c := Config{Series: 100, Labels: 8, Metrics: 10, SeriesPerRequest: 30, Rounds: 3, Interval: 15 * time.Second, Start: t0}
	if mod != nil {
		mod(&c)
	}
	return c
}

// decoded is what a receiver sees of a payload, decoded by Vigil's own
// remote_write decoder.
type decoded struct {
	requests   int
	samples    int
	series     map[string]int // label set -> samples
	perMetric  map[string]int
	timestamps map[int64]int
	sum0       float64
}

func decodeAll(t *testing.T, p *Payload) decoded {
	t.Helper()
	d := decoded{series: map[string]int{}, perMetric: map[string]int{}, timestamps: map[int64]int{}}
	var r remotewrite.Request
	for _, round := range p.Rounds {
		for _, body := range round {
			d.requests++
			raw, err := snappy.Decode(nil, body)
			if err != nil {
				t.Fatalf("snappy: %v", err)
			}
			if err := remotewrite.DecodeV1(raw, &r); err != nil {
				t.Fatalf("decode: %v", err)
			}
			for _, s := range r.Series {
				var b strings.Builder
				name := ""
				for i, l := range s.Labels {
					if i > 0 && s.Labels[i-1].Name >= l.Name {
						t.Fatalf("labels not sorted or duplicated: %v", s.Labels)
					}
					if l.Value == "" {
						t.Fatalf("empty label value: %v", s.Labels)
					}
					if l.Name == "__name__" {
						name = l.Value
					}
					b.WriteString(l.Name + "=" + l.Value + ",")
				}
				if len(s.Samples) != 1 {
					t.Fatalf("want one sample per series, got %d", len(s.Samples))
				}
				d.series[b.String()]++
				d.perMetric[name]++
				d.samples++
				d.timestamps[s.Samples[0].Timestamp]++
				if name == MetricName(0) {
					d.sum0 += s.Samples[0].Value
				}
			}
		}
	}
	return d
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name         string
		cfg          Config
		wantRequests int
		wantSamples  int
		wantSeries   int
		wantLabels   int
	}{
		{"defaults shape", small(nil), 3 * 4, 300, 100, 8},
		{"two labels", small(func(c *Config) { c.Labels = 2 }), 12, 300, 100, 2},
		{"many labels", small(func(c *Config) { c.Labels = 20 }), 12, 300, 100, 20},
		{"one request per round", small(func(c *Config) { c.SeriesPerRequest = 1000 }), 3, 300, 100, 8},
		{"one series per request", small(func(c *Config) { c.SeriesPerRequest = 1 }), 300, 300, 100, 8},
		{"one metric", small(func(c *Config) { c.Metrics = 1 }), 12, 300, 100, 8},
		// 10 of 100 series are replaced in rounds 1 and 2: 20 more series.
		{"churn 10%", small(func(c *Config) { c.Churn = 0.1 }), 12, 300, 120, 8},
		{"full churn", small(func(c *Config) { c.Churn = 1 }), 12, 300, 300, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Build(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			d := decodeAll(t, p)
			if d.requests != tt.wantRequests || p.Requests() != tt.wantRequests {
				t.Errorf("requests: decoded %d, Requests() %d, want %d", d.requests, p.Requests(), tt.wantRequests)
			}
			if d.samples != tt.wantSamples || p.Samples != tt.wantSamples {
				t.Errorf("samples: decoded %d, reported %d, want %d", d.samples, p.Samples, tt.wantSamples)
			}
			if len(d.series) != tt.wantSeries || p.ActiveSeries != tt.wantSeries {
				t.Errorf("series: decoded %d distinct, reported %d, want %d", len(d.series), p.ActiveSeries, tt.wantSeries)
			}
			for k := range d.series {
				if n := strings.Count(k, ","); n != tt.wantLabels {
					t.Fatalf("series %s has %d labels, want %d", k, n, tt.wantLabels)
				}
				break
			}
			// The expectations the verifier checks match what was encoded.
			seriesPerMetric := map[string]int{}
			for k := range d.series {
				name, _, _ := strings.Cut(strings.TrimPrefix(k, "__name__="), ",")
				seriesPerMetric[name]++
			}
			for m := range tt.cfg.Metrics {
				if got, want := d.perMetric[MetricName(m)], p.SamplesPerMetric[m]; got != want {
					t.Errorf("%s: %d samples encoded, %d expected", MetricName(m), got, want)
				}
				if got, want := seriesPerMetric[MetricName(m)], p.SeriesPerMetric[m]; got != want {
					t.Errorf("%s: %d series encoded, %d expected", MetricName(m), got, want)
				}
			}
			if d.sum0 != p.ValueSum {
				t.Errorf("sum of %s: encoded %g, expected %g", MetricName(0), d.sum0, p.ValueSum)
			}
			// One timestamp per round, Interval apart, every series in each.
			for r := range tt.cfg.Rounds {
				if got := d.timestamps[p.Timestamp(r).UnixMilli()]; got != tt.cfg.Series {
					t.Errorf("round %d: %d samples at %s, want %d", r, got, p.Timestamp(r), tt.cfg.Series)
				}
			}
			if p.CompressedBytes <= 0 || p.CompressedBytes >= p.RawBytes {
				t.Errorf("sizes: raw %d, compressed %d", p.RawBytes, p.CompressedBytes)
			}
		})
	}
}

func TestBuildSamplesIncrease(t *testing.T) {
	// Without churn every series is a counter that only goes up.
	p, err := Build(small(func(c *Config) { c.Rounds = 4 }))
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]float64{}
	var r remotewrite.Request
	for _, round := range p.Rounds {
		for _, body := range round {
			raw, _ := snappy.Decode(nil, body)
			if err := remotewrite.DecodeV1(raw, &r); err != nil {
				t.Fatal(err)
			}
			for _, s := range r.Series {
				key := ""
				for _, l := range s.Labels {
					key += l.Name + "=" + l.Value + ","
				}
				if v := s.Samples[0].Value; v <= last[key] {
					t.Fatalf("%s went from %g to %g", key, last[key], v)
				}
				last[key] = s.Samples[0].Value
			}
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no series", func(c *Config) { c.Series = 0 }, "series must be at least 1"},
		{"one label", func(c *Config) { c.Labels = 1 }, "labels must be between 2 and 64"},
		{"more metrics than series", func(c *Config) { c.Metrics = 101 }, "metrics must be between 1 and series"},
		{"empty requests", func(c *Config) { c.SeriesPerRequest = 0 }, "series per request"},
		{"no rounds", func(c *Config) { c.Rounds = 0 }, "rounds must be at least 1"},
		{"no interval", func(c *Config) { c.Interval = 0 }, "interval must be positive"},
		{"churn over 1", func(c *Config) { c.Churn = 1.5 }, "churn must be between 0 and 1"},
		{"no start", func(c *Config) { c.Start = time.Time{} }, "start time is not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(small(tt.mod))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
}
