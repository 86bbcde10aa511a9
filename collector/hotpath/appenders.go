package hotpath

import (
	"fmt"
	"math"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/collector"
)

// The checks every receiver's samples pass on their way to storage, one
// appender wrapper each, in the style of Prometheus's scrape appenders
// (timeLimitAppender, limitAppender): each refuses a sample with an error
// that collector.ReasonOf names, and the receivers count and answer it.

var (
	_ storage.ExemplarAppenderV2 = (*appender)(nil)
	_ storage.ExemplarAppenderV2 = (*labelLimitAppender)(nil)
	_ storage.ExemplarAppenderV2 = (*timeLimitAppender)(nil)
	_ storage.ExemplarAppenderV2 = (*batchAppender)(nil)
)

// labelLimitAppender refuses a new series whose labels exceed the ingest
// limits (number of labels, length of a name or a value). An append by
// reference is of a series that passed already.
type labelLimitAppender struct {
	storage.ExemplarAppenderV2
	limits collector.IngestLimits
}

func (a *labelLimitAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AOptions) (storage.SeriesRef, error) {
	if ref == 0 && !ls.IsEmpty() {
		if err := a.limits.CheckLabels(ls); err != nil {
			return 0, err
		}
	}
	return a.ExemplarAppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
}

// timeLimitAppender refuses samples older than minT or newer than maxT
// (ingest.max_sample_age and max_sample_future from the start of the
// transaction).
type timeLimitAppender struct {
	storage.ExemplarAppenderV2
	minT, maxT int64
}

func (a *timeLimitAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AOptions) (storage.SeriesRef, error) {
	switch {
	case t < a.minT:
		return 0, fmt.Errorf("%w (the oldest accepted now is %s)", collector.ErrSampleTooOld, formatMillis(a.minT))
	case t > a.maxT:
		return 0, fmt.Errorf("%w (the newest accepted now is %s)", collector.ErrSampleTooFarInFuture, formatMillis(a.maxT))
	}
	return a.ExemplarAppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
}

func formatMillis(t int64) string { return time.UnixMilli(t).UTC().Format(time.RFC3339) }

// batchAppender refuses a sample that lands on or before a sample of the
// same series earlier in the same transaction with another value. The head
// checks a sample against committed samples only: such a sample would pass
// Append and be dropped silently at Commit. An exact repeat (same time,
// same value) passes, as the head takes it.
type batchAppender struct {
	storage.ExemplarAppenderV2
	states *batchStates
	state  *batchState
}

type batchState struct {
	refOf map[uint64]storage.SeriesRef // label hash → series, for appends by labels
	last  map[storage.SeriesRef]batchSample
}

type batchSample struct {
	t  int64
	v  float64
	h  *histogram.Histogram
	fh *histogram.FloatHistogram
}

// batchStates keeps a few cleared states for the next transactions: a
// cleared map keeps its buckets, so a steady stream of requests of one
// size allocates none (a sync.Pool would be emptied at every GC). A state
// that grew past maxKeptBatchSeries is left to the GC.
type batchStates struct{ free chan *batchState }

const maxKeptBatchSeries = 1 << 16

func newBatchStates(n int) *batchStates { return &batchStates{free: make(chan *batchState, n)} }

func (p *batchStates) get() *batchState {
	select {
	case s := <-p.free:
		return s
	default:
		return &batchState{refOf: map[uint64]storage.SeriesRef{}, last: map[storage.SeriesRef]batchSample{}}
	}
}

func (p *batchStates) put(s *batchState) {
	if len(s.last) > maxKeptBatchSeries || len(s.refOf) > maxKeptBatchSeries {
		return
	}
	clear(s.refOf)
	clear(s.last)
	select {
	case p.free <- s:
	default:
	}
}

func (a *batchAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AOptions) (storage.SeriesRef, error) {
	if a.state == nil {
		a.state = a.states.get()
	}
	key, hash, byLabels := ref, uint64(0), ref == 0 && !ls.IsEmpty()
	if byLabels {
		hash = ls.Hash()
		key = a.state.refOf[hash]
	}
	if key != 0 {
		if prev, ok := a.state.last[key]; ok {
			if err := prev.conflict(t, v, h, fh); err != nil {
				return 0, err
			}
		}
	}
	r, err := a.ExemplarAppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
	if r != 0 && (err == nil || collector.IsPartial(err)) {
		if byLabels {
			a.state.refOf[hash] = r
		}
		if prev, ok := a.state.last[r]; !ok || t > prev.t {
			a.state.last[r] = batchSample{t: t, v: v, h: h, fh: fh}
		}
	}
	return r, err
}

// conflict names why a sample at t cannot follow s in one transaction.
func (s batchSample) conflict(t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram) error {
	switch {
	case t > s.t:
		return nil
	case t < s.t:
		return fmt.Errorf("%w: a sample at %d came earlier in the same request", storage.ErrOutOfOrderSample, s.t)
	case h != nil && s.h != nil && h.Equals(s.h), fh != nil && s.fh != nil && fh.Equals(s.fh):
		return nil
	case h == nil && fh == nil && s.h == nil && s.fh == nil:
		if math.Float64bits(v) == math.Float64bits(s.v) {
			return nil
		}
		return fmt.Errorf("%w within the same request", storage.NewDuplicateFloatErr(t, s.v, v))
	}
	return fmt.Errorf("%w within the same request: another histogram or value at %d", storage.ErrDuplicateSampleForTimestamp, t)
}

func (a *batchAppender) release() {
	if a.state == nil {
		return
	}
	a.states.put(a.state)
	a.state = nil
}

func (a *batchAppender) Commit() error {
	defer a.release()
	return a.ExemplarAppenderV2.Commit()
}

func (a *batchAppender) Rollback() error {
	defer a.release()
	return a.ExemplarAppenderV2.Rollback()
}
