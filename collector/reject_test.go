package collector

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// TestReasonOf: every refusal of one sample, however wrapped, maps to the
// same reason for every receiver; anything else is a storage failure ("").
func TestReasonOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{storage.ErrOutOfOrderSample, ReasonOutOfOrder},
		{fmt.Errorf("%w: a sample at 5 came earlier", storage.ErrOutOfOrderSample), ReasonOutOfOrder},
		{storage.ErrTooOldSample, ReasonTooOld},
		{fmt.Errorf("%w (the oldest accepted now is x)", ErrSampleTooOld), ReasonTooOld},
		{storage.NewDuplicateFloatErr(1, 2, 3), ReasonDuplicate},
		{fmt.Errorf("%w within the same request", storage.NewDuplicateFloatErr(1, 2, 3)), ReasonDuplicate},
		{storage.ErrOutOfBounds, ReasonOutOfBounds},
		{ErrSampleTooFarInFuture, ReasonFuture},
		{fmt.Errorf("%w (max_series: 10)", ErrSeriesLimit), ReasonSeriesLimit},
		{&LabelLimitError{Err: ErrMaxLabelNames, Count: 31, Limit: 30}, ReasonMaxLabelNames},
		{&LabelLimitError{Err: ErrLabelNameTooLong, Name: "n", Limit: 1}, ReasonLabelNameTooLong},
		{&LabelLimitError{Err: ErrLabelValueTooLong, Name: "n", Value: "vv", Limit: 1}, ReasonLabelValueTooLong},
		{fmt.Errorf("%w: duplicate label name %q", ErrInvalidLabels, "job"), ReasonInvalidLabels},
		// Only OTLP mapped this one before the receivers shared one mapping.
		{fmt.Errorf("label name %q is not unique: %w", "job", tsdb.ErrInvalidSample), ReasonInvalidSample},
		{histogram.ErrHistogramCountMismatch, ReasonInvalidSample},
		{errors.New("write /data/wal/00000001: no space left on device"), ""},
		{nil, ""},
	} {
		t.Run(fmt.Sprint(tc.err), func(t *testing.T) {
			if got := ReasonOf(tc.err); got != tc.want {
				t.Errorf("ReasonOf(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}

func TestIsPartial(t *testing.T) {
	if !IsPartial(fmt.Errorf("append: %w", &storage.AppendPartialError{ExemplarErrors: []storage.ExemplarError{{Index: 0, Err: storage.ErrOutOfOrderExemplar}}})) {
		t.Error("a wrapped AppendPartialError is not partial")
	}
	if IsPartial(storage.ErrOutOfOrderSample) || IsPartial(nil) {
		t.Error("a refusal is partial")
	}
}

func TestRejections(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	var r Rejections
	if err := r.Err(5, "samples"); err != nil {
		t.Fatalf("no rejections: %v", err)
	}
	calls := 0
	example := func(s string) func() string {
		return func() string { calls++; return s }
	}
	r.Add(ReasonOutOfOrder, 1, example(`{a="1"} @1: out of order sample`))
	r.Add(ReasonTooOld, 3, example(`{a="2"} @0: too old`))
	r.Add(ReasonOutOfOrder, 2, example("not used"))
	if calls != 2 {
		t.Errorf("example built %d times, want once per reason", calls)
	}
	if r.Total() != 6 {
		t.Errorf("total %d, want 6", r.Total())
	}
	err := r.Err(4, "samples")
	want := `6 of 10 samples rejected; out_of_order: 3, first: {a="1"} @1: out of order sample; too_old: 3, first: {a="2"} @0: too old`
	if err == nil || err.Error() != want || StatusCode(err) != http.StatusBadRequest {
		t.Errorf("got %d %v, want 400 %s", StatusCode(err), err, want)
	}
	r.Count(m, "remote_write")
	if v := testutil.ToFloat64(m.Rejected.WithLabelValues("remote_write", ReasonOutOfOrder)); v != 3 {
		t.Errorf("counted %v out_of_order, want 3", v)
	}
}

func TestIngestLimits(t *testing.T) {
	ok := DefaultIngestLimits()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mutate func(*IngestLimits)
		want   string
	}{
		{func(l *IngestLimits) { l.MaxSampleAge = 0 }, "max_sample_age must be positive"},
		{func(l *IngestLimits) { l.MaxSampleFuture = -1 }, "max_sample_future must be positive"},
		{func(l *IngestLimits) { l.MaxLabelNamesPerSeries = 0 }, "max_label_names_per_series must be positive"},
		{func(l *IngestLimits) { l.MaxLabelNameLength = 0 }, "max_label_name_length must be positive"},
		{func(l *IngestLimits) { l.MaxLabelValueLength = 0 }, "max_label_value_length must be positive"},
	} {
		l := DefaultIngestLimits()
		tc.mutate(&l)
		if err := l.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}

	wide := labels.NewScratchBuilder(31)
	for i := range 31 {
		wide.Add(fmt.Sprintf("l%02d", i), "v")
	}
	for _, tc := range []struct {
		name string
		ls   labels.Labels
		want error
		msg  string
	}{
		{"within the limits", labels.FromStrings("__name__", "m", "a", strings.Repeat("v", 2048)), nil, ""},
		{"31 labels", wide.Labels(), ErrMaxLabelNames, "series has 31 labels, more than ingest.max_label_names_per_series (30)"},
		{"long name", labels.FromStrings("__name__", "m", strings.Repeat("n", 1025), "v"), ErrLabelNameTooLong, "is 1025 bytes long, more than ingest.max_label_name_length (1024)"},
		{"long value", labels.FromStrings("__name__", "m", "path", strings.Repeat("é", 1025)), ErrLabelValueTooLong, `value of label "path" is 2050 bytes long, more than ingest.max_label_value_length (2048): "éé`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ok.CheckLabels(tc.ls)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if err != nil && !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("message %q lacks %q", err, tc.msg)
			}
		})
	}
}
