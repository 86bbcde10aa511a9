// Package derived holds series that Vigil computes from telemetry (log
// record counts, service graph edges) in memory and writes to storage as
// cumulative counters on a flush interval. The number of series is
// bounded; series that stop changing expire and get a staleness marker.
package derived

import (
	"math"
	"sync"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
)

// Counters is a bounded set of counters of one metric.
type Counters struct {
	name   string
	max    int
	expiry time.Duration

	mu     sync.Mutex
	series map[string]*counter
}

type counter struct {
	ls      labels.Labels
	v       float64
	updated time.Time
	written bool
}

// NewCounters holds at most maxSeries counters named name; a counter not
// increased for expiry is dropped.
func NewCounters(name string, maxSeries int, expiry time.Duration) *Counters {
	return &Counters{name: name, max: maxSeries, expiry: expiry, series: map[string]*counter{}}
}

// Add increases the counter identified by key (any byte encoding unique to
// its labels) by delta. mk builds its labels (without __name__) the first
// time. It returns false, adding nothing, when the set is full.
func (c *Counters) Add(key []byte, mk func() labels.Labels, delta float64, at time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.series[string(key)]
	if !ok {
		if len(c.series) >= c.max {
			return false
		}
		s = &counter{ls: labels.NewBuilder(mk()).Set(model.MetricNameLabel, c.name).Labels()}
		c.series[string(key)] = s
	}
	s.v += delta
	s.updated = at
	return true
}

// Len is the number of counters held.
func (c *Counters) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.series)
}

// Sample is one value to write.
type Sample struct {
	Labels labels.Labels
	Value  float64
	// At is when the value is written; zero: the time Collect was given.
	At time.Time
}

// StartOffset is how long before its first value a counter is written
// as 0 (see Collect).
const StartOffset = time.Millisecond

// Collect returns the current value of every live counter, and a
// staleness marker for each counter that expired (which it forgets). A
// counter written for the first time by this process is preceded by a 0
// just before (StartOffset), as Prometheus's created-timestamp zero
// ingestion does: a restarted Vigil, or collector replica, starts its
// counters again from 0, and rate(), increase() and the verdict see the
// reset even when the new value is above the old one.
func (c *Counters) Collect(at time.Time) []Sample {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Sample, 0, len(c.series))
	for k, s := range c.series {
		if at.Sub(s.updated) > c.expiry {
			if s.written {
				out = append(out, Sample{Labels: s.ls, Value: math.Float64frombits(value.StaleNaN)})
			}
			delete(c.series, k)
			continue
		}
		if !s.written {
			out = append(out, Sample{Labels: s.ls, Value: 0, At: at.Add(-StartOffset)})
		}
		s.written = true
		out = append(out, Sample{Labels: s.ls, Value: s.v})
	}
	return out
}
