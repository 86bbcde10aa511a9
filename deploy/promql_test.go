package deploy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/query"
	"github.com/vigilhq/vigil/storage"
)

// TestPromQLLimits: the verdict's queries run under the query API's limits:
// the 11,000 points per series (refused before the engine runs) and
// query.max_samples.
func TestPromQLLimits(t *testing.T) {
	qcfg := query.DefaultConfig()
	qcfg.MaxSamples = 20000
	eng, err := query.NewEngine(qcfg, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	scfg := storage.DefaultConfig()
	scfg.Path = t.TempDir()
	st, err := storage.Open(scfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p := PromQL{Engine: eng, Queryable: st}
	end := time.Now()
	tests := []struct {
		name  string
		expr  string
		start time.Time
		step  time.Duration
		err   string
	}{
		{"within the limits", "vector(1)", end.Add(-time.Hour), 15 * time.Second, ""},
		{"11,000 points", "vector(1)", end.Add(-11000 * time.Second), time.Second, ""},
		{"11,001 points", "vector(1)", end.Add(-11001 * time.Second), time.Second, "exceed the maximum resolution of 11000"},
		{"the reported attack: 10000d at 15s", "vector(1)", end.Add(-10000 * 24 * time.Hour), 15 * time.Second, "exceed the maximum resolution"},
		{"more samples than query.max_samples", "sum_over_time(vector(1)[10h:1s])", end.Add(-time.Minute), 15 * time.Second, "too many samples"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := p.QueryRange(context.Background(), tc.expr, tc.start, end, tc.step)
			if tc.err == "" {
				if err != nil || len(v) == 0 {
					t.Fatalf("%d values, %v", len(v), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.err)
			}
		})
	}
}
