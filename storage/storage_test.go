package storage

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	promstorage "github.com/prometheus/prometheus/storage"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"empty path", func(c *Config) { c.Path = "" }, "path must not be empty"},
		{"negative retention", func(c *Config) { c.Retention = model.Duration(-time.Hour) }, "retention must not be negative"},
		{"negative size", func(c *Config) { c.RetentionSize = -1 }, "retention_size must not be negative"},
		{"negative ooo window", func(c *Config) { c.OutOfOrderTimeWindow = model.Duration(-time.Second) }, "out_of_order_time_window"},
		{"negative exemplars", func(c *Config) { c.MaxExemplars = -1 }, "max_exemplars"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mutate(&c)
			err := c.Validate()
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Validate() = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestReopenKeepsSamplesAndMetadata closes and reopens the storage and finds
// the committed samples (from the WAL) and the metadata (from its file).
func TestReopenKeepsSamplesAndMetadata(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Path = t.TempDir()
	st, err := Open(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	app := st.AppenderV2(context.Background())
	now := time.Now().UnixMilli()
	ls := labels.FromStrings("__name__", "deploys_total", "service", "checkout")
	var ref promstorage.SeriesRef
	for i := range 10 {
		if ref, err = app.Append(ref, ls, 0, now+int64(i)*1000, float64(i), nil, nil, promstorage.AOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	st.Metadata().Set("deploys_total", metadata.Metadata{Type: model.MetricTypeCounter, Help: "Deployments."})
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st, err = Open(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	q, err := st.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "deploys_total"))
	n := 0
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() != 0 {
			n++
		}
	}
	if n != 10 {
		t.Fatalf("found %d samples after reopen, want 10", n)
	}
	md := st.Metadata().Get("deploys_total", 0, 0)["deploys_total"]
	if len(md) != 1 || md[0].Help != "Deployments." {
		t.Fatalf("metadata after reopen: %+v", md)
	}
}

func TestMetadataStoreBounded(t *testing.T) {
	s, err := OpenMetadataStore("", 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"a", "b", "c"} {
		s.Set(f, metadata.Metadata{Type: model.MetricTypeGauge})
	}
	if got := s.Get("", 0, 0); len(got) != 2 {
		t.Fatalf("store holds %d families, want its limit of 2", len(got))
	}
	s.Set("a", metadata.Metadata{Type: model.MetricTypeCounter})
	if got := s.Get("a", 0, 0)["a"][0].Type; got != model.MetricTypeCounter {
		t.Fatalf("an existing family is still updated at the limit; got %s", got)
	}
	s.Set("empty", metadata.Metadata{Type: model.MetricTypeUnknown})
	if got := s.Get("", 1, 0); len(got) != 1 {
		t.Fatalf("limit 1 returned %d families", len(got))
	}
}
