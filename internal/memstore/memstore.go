// Package memstore is an in-memory storage.AppendableV2 for tests: it keeps
// what was committed, series by series, so a test can check exactly what a
// component wrote without a TSDB.
package memstore

import (
	"context"
	"sort"
	"sync"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// Sample is one committed sample.
type Sample struct {
	T         int64
	V         float64
	H         *histogram.Histogram
	Exemplars []exemplar.Exemplar
}

// Store holds committed samples by series (labels.Labels.String()).
type Store struct {
	mu      sync.Mutex
	samples map[string][]Sample
	labels  map[string]labels.Labels
	commits int
}

// New returns an empty store.
func New() *Store { return &Store{samples: map[string][]Sample{}, labels: map[string]labels.Labels{}} }

// AppenderV2 implements storage.AppendableV2.
func (s *Store) AppenderV2(context.Context) storage.AppenderV2 { return &appender{s: s} }

type appender struct {
	s       *Store
	pending []pending
}

type pending struct {
	ls labels.Labels
	Sample
}

func (a *appender) Append(_ storage.SeriesRef, ls labels.Labels, _, t int64, v float64, h *histogram.Histogram, _ *histogram.FloatHistogram, opts storage.AOptions) (storage.SeriesRef, error) {
	a.pending = append(a.pending, pending{ls, Sample{T: t, V: v, H: h, Exemplars: opts.Exemplars}})
	return 0, nil
}

func (a *appender) Commit() error {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	a.s.commits++
	for _, p := range a.pending {
		k := p.ls.String()
		a.s.samples[k] = append(a.s.samples[k], p.Sample)
		a.s.labels[k] = p.ls
	}
	a.pending = nil
	return nil
}

func (a *appender) Rollback() error { a.pending = nil; return nil }

// Last returns the newest sample of the series written as ls.String().
func (s *Store) Last(series string) (Sample, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.samples[series]
	if len(ss) == 0 {
		return Sample{}, false
	}
	return ss[len(ss)-1], true
}

// Series lists the series written, sorted.
func (s *Store) Series() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.samples))
	for k := range s.samples {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Select returns the labels and newest sample of every series whose metric
// name is name.
func (s *Store) Select(name string) map[string]Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]Sample{}
	for k, ls := range s.labels {
		if ls.Get(model.MetricNameLabel) == name {
			ss := s.samples[k]
			out[k] = ss[len(ss)-1]
		}
	}
	return out
}

// Samples returns every committed sample of the series written as ls.String(), in order.
func (s *Store) Samples(series string) []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sample(nil), s.samples[series]...)
}
