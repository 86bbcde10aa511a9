package collector

import (
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// IngestLimits are the checks every receiver applies to what it is sent,
// one set for remote_write, OTLP and Loki push alike (the `ingest:` section
// of vigil.yml), as Mimir's and Loki's distributors apply theirs.
type IngestLimits struct {
	// MaxSampleAge refuses samples (and log lines) older than this
	// (too_old). Raise it with storage.out_of_order_time_window, or to
	// accept a backlog a sender resends after a long outage.
	MaxSampleAge model.Duration `yaml:"max_sample_age"`
	// MaxSampleFuture refuses samples further ahead of Vigil's clock than
	// this (too_far_in_future): one far-future sample would move the
	// head's time and make every later sample out of bounds.
	MaxSampleFuture model.Duration `yaml:"max_sample_future"`
	// MaxLabelNamesPerSeries refuses series with more labels, __name__
	// included (max_label_names_per_series).
	MaxLabelNamesPerSeries int `yaml:"max_label_names_per_series"`
	// MaxLabelNameLength and MaxLabelValueLength refuse series with a
	// longer label name or value, in bytes (label_name_too_long,
	// label_value_too_long).
	MaxLabelNameLength  int `yaml:"max_label_name_length"`
	MaxLabelValueLength int `yaml:"max_label_value_length"`
}

// DefaultIngestLimits are Mimir's defaults for labels and the window OTLP
// used before: two hours back, ten minutes ahead.
func DefaultIngestLimits() IngestLimits {
	return IngestLimits{
		MaxSampleAge:           model.Duration(2 * time.Hour),
		MaxSampleFuture:        model.Duration(10 * time.Minute),
		MaxLabelNamesPerSeries: 30,
		MaxLabelNameLength:     1024,
		MaxLabelValueLength:    2048,
	}
}

// Validate reports the first limit that cannot work.
func (l IngestLimits) Validate() error {
	switch {
	case l.MaxSampleAge <= 0:
		return fmt.Errorf("max_sample_age must be positive, got %s", l.MaxSampleAge)
	case l.MaxSampleFuture <= 0:
		return fmt.Errorf("max_sample_future must be positive, got %s", l.MaxSampleFuture)
	case l.MaxLabelNamesPerSeries <= 0:
		return fmt.Errorf("max_label_names_per_series must be positive, got %d", l.MaxLabelNamesPerSeries)
	case l.MaxLabelNameLength <= 0:
		return fmt.Errorf("max_label_name_length must be positive, got %d", l.MaxLabelNameLength)
	case l.MaxLabelValueLength <= 0:
		return fmt.Errorf("max_label_value_length must be positive, got %d", l.MaxLabelValueLength)
	}
	return nil
}

// Window is the range of timestamps, in milliseconds, accepted at now.
func (l IngestLimits) Window(now time.Time) (minT, maxT int64) {
	return now.Add(-time.Duration(l.MaxSampleAge)).UnixMilli(), now.Add(time.Duration(l.MaxSampleFuture)).UnixMilli()
}

// LabelLimitError is a series refused for its labels. Err is
// ErrMaxLabelNames, ErrLabelNameTooLong or ErrLabelValueTooLong.
type LabelLimitError struct {
	Err   error
	Count int    // labels of the series (ErrMaxLabelNames)
	Name  string // the label too long
	Value string
	Limit int
}

func (e *LabelLimitError) Error() string {
	switch e.Err {
	case ErrMaxLabelNames:
		return fmt.Sprintf("series has %d labels, more than ingest.max_label_names_per_series (%d)", e.Count, e.Limit)
	case ErrLabelNameTooLong:
		return fmt.Sprintf("label name %s is %d bytes long, more than ingest.max_label_name_length (%d)", clip(e.Name), len(e.Name), e.Limit)
	default:
		return fmt.Sprintf("value of label %s is %d bytes long, more than ingest.max_label_value_length (%d): %s", clip(e.Name), len(e.Value), e.Limit, clip(e.Value))
	}
}

func (e *LabelLimitError) Unwrap() error { return e.Err }

// CheckLabels checks a series' labels against the label limits and
// returns a *LabelLimitError for the first one exceeded.
func (l IngestLimits) CheckLabels(ls labels.Labels) error {
	if n := ls.Len(); n > l.MaxLabelNamesPerSeries {
		return &LabelLimitError{Err: ErrMaxLabelNames, Count: n, Limit: l.MaxLabelNamesPerSeries}
	}
	var err error
	ls.Range(func(lb labels.Label) {
		switch {
		case err != nil:
		case len(lb.Name) > l.MaxLabelNameLength:
			err = &LabelLimitError{Err: ErrLabelNameTooLong, Name: lb.Name, Value: lb.Value, Limit: l.MaxLabelNameLength}
		case len(lb.Value) > l.MaxLabelValueLength:
			err = &LabelLimitError{Err: ErrLabelValueTooLong, Name: lb.Name, Value: lb.Value, Limit: l.MaxLabelValueLength}
		}
	})
	return err
}

// clip shortens s for an error message.
func clip(s string) string {
	const n = 100
	if len(s) <= n {
		return strconv.Quote(s)
	}
	for i := n; i > n-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			return strconv.Quote(s[:i]) + "…"
		}
	}
	return strconv.Quote(s[:n]) + "…"
}
