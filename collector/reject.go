package collector

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// Reasons a sample (or log line) is refused: the "reason" label of
// vigil_ingest_rejected_samples_total, the same for every receiver.
const (
	ReasonOutOfOrder        = "out_of_order"
	ReasonTooOld            = "too_old"
	ReasonDuplicate         = "duplicate_timestamp"
	ReasonOutOfBounds       = "out_of_bounds"
	ReasonFuture            = "too_far_in_future"
	ReasonInvalidLabels     = "invalid_labels"
	ReasonInvalidSample     = "invalid_sample"
	ReasonSeriesLimit       = "series_limit"
	ReasonDeltaTemporality  = "delta_temporality"
	ReasonMaxLabelNames     = "max_label_names_per_series"
	ReasonLabelNameTooLong  = "label_name_too_long"
	ReasonLabelValueTooLong = "label_value_too_long"
	ReasonInvalidUTF8       = "invalid_utf8"
	// ReasonDerivedSeries: a sample of a series Vigil derives itself (span
	// metrics, service graph, log metrics, deployment and verdict series)
	// from a writer not listed in ingest.accept_derived_series_from.
	ReasonDerivedSeries = "derived_series"
)

// Reasons a whole request is refused: the "reason" label of
// vigil_ingest_refused_requests_total.
const (
	RefusedTooDeep         = "too_deep"
	RefusedBodyReadTimeout = "body_read_timeout"
	RefusedTooLarge        = "too_large"
)

// Errors the hot path's appenders return for a refused sample.
var (
	// ErrSeriesLimit is returned for a sample of a new series when storage
	// already holds the configured maximum number of series.
	ErrSeriesLimit = errors.New("series limit reached: a new series was refused")
	// ErrSampleTooOld is a sample older than ingest.max_sample_age.
	ErrSampleTooOld = errors.New("sample is older than ingest.max_sample_age")
	// ErrSampleTooFarInFuture is a sample further ahead of the clock than ingest.max_sample_future.
	ErrSampleTooFarInFuture = errors.New("sample is further in the future than ingest.max_sample_future")
	// ErrInvalidLabels is a series whose labels cannot be stored.
	ErrInvalidLabels = errors.New("invalid labels")
	// ErrMaxLabelNames is a series with more labels than ingest.max_label_names_per_series.
	ErrMaxLabelNames = errors.New("too many labels")
	// ErrLabelNameTooLong is a label name longer than ingest.max_label_name_length.
	ErrLabelNameTooLong = errors.New("label name too long")
	// ErrDerivedSeries is a sample of a derived series from a writer that
	// may not send them: the verdict and the generated rules trust these
	// series, so a forged one could roll a good version back.
	ErrDerivedSeries = errors.New("series derived by Vigil")
	// ErrLabelValueTooLong is a label value longer than ingest.max_label_value_length.
	ErrLabelValueTooLong = errors.New("label value too long")
)

// ReasonOf names why storage (or the hot path in front of it) refused a
// sample, or returns "" when err is not the refusal of one sample but a
// failure of storage, which fails the whole request.
func ReasonOf(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, storage.ErrOutOfOrderSample):
		return ReasonOutOfOrder
	case errors.Is(err, storage.ErrTooOldSample), errors.Is(err, ErrSampleTooOld):
		return ReasonTooOld
	case errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
		return ReasonDuplicate
	case errors.Is(err, storage.ErrOutOfBounds):
		return ReasonOutOfBounds
	case errors.Is(err, ErrSampleTooFarInFuture):
		return ReasonFuture
	case errors.Is(err, ErrDerivedSeries):
		return ReasonDerivedSeries
	case errors.Is(err, ErrSeriesLimit):
		return ReasonSeriesLimit
	case errors.Is(err, ErrMaxLabelNames):
		return ReasonMaxLabelNames
	case errors.Is(err, ErrLabelNameTooLong):
		return ReasonLabelNameTooLong
	case errors.Is(err, ErrLabelValueTooLong):
		return ReasonLabelValueTooLong
	case errors.Is(err, ErrInvalidLabels):
		return ReasonInvalidLabels
	case errors.Is(err, tsdb.ErrInvalidSample), isHistogramError(err):
		return ReasonInvalidSample
	}
	return ""
}

func isHistogramError(err error) bool {
	var e histogram.Error
	return errors.As(err, &e)
}

// IsPartial reports whether err says a sample was stored but some of its
// exemplars were not.
func IsPartial(err error) bool {
	var pErr *storage.AppendPartialError
	return errors.As(err, &pErr)
}

// MetadataSink keeps metric metadata (type, help, unit) by metric family.
type MetadataSink interface {
	Set(family string, m metadata.Metadata)
}

// Rejections tallies what one request could not store, by reason, keeping
// the first example of each reason for the answer.
type Rejections struct {
	byReason map[string]*rejection
	order    []string
	total    int
}

type rejection struct {
	count   int
	example string
}

// Add records n refused items for reason; example (called only for the
// first item of a reason) describes one of them.
func (r *Rejections) Add(reason string, n int, example func() string) {
	if r.byReason == nil {
		r.byReason = map[string]*rejection{}
	}
	p, ok := r.byReason[reason]
	if !ok {
		p = &rejection{example: example()}
		r.byReason[reason] = p
		r.order = append(r.order, reason)
	}
	p.count += n
	r.total += n
}

// Total is the number of refused items.
func (r *Rejections) Total() int { return r.total }

// Count adds the refusals to vigil_ingest_rejected_samples_total.
func (r *Rejections) Count(m *Metrics, receiver string) {
	for _, reason := range r.order {
		m.Rejected.WithLabelValues(receiver, reason).Add(float64(r.byReason[reason].count))
	}
}

// Summary names each reason with its count and first example, in the
// order they were met: "out_of_order: 2, first: {...} @123: out of order sample; ...".
func (r *Rejections) Summary() string {
	var sb strings.Builder
	for i, reason := range r.order {
		if i > 0 {
			sb.WriteString("; ")
		}
		p := r.byReason[reason]
		fmt.Fprintf(&sb, "%s: %d, first: %s", reason, p.count, p.example)
	}
	return sb.String()
}

// Err is the answer to a request with refusals: a 400 that counts them
// against the stored items (what is "samples" or "entries"), or nil when
// nothing was refused.
func (r *Rejections) Err(stored int, what string) error {
	if r.total == 0 {
		return nil
	}
	return Errorf(http.StatusBadRequest, "%d of %d %s rejected; %s", r.total, r.total+stored, what, r.Summary())
}
