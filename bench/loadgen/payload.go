// Package loadgen builds realistic Prometheus remote_write 1.0 payloads,
// replays them at full speed against any remote_write endpoint with
// concurrent senders, and verifies by PromQL that everything arrived.
//
// Payloads are built once, before any timing starts, so that the same bytes
// go to every target and the generator's own encoding cost is not measured.
package loadgen

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// MetricPrefix starts the name of every series the generator writes.
const MetricPrefix = "bench_metric_"

// Config describes the load.
type Config struct {
	// Series is the number of series written in each round.
	Series int
	// Labels is the number of labels of a series, __name__ included (at least 2).
	Labels int
	// Metrics is the number of distinct metric names the series are spread over.
	Metrics int
	// SeriesPerRequest is how many series, one sample each, one request holds
	// (Prometheus's queue_config.max_samples_per_send defaults to 2000).
	SeriesPerRequest int
	// Rounds is the number of samples each series gets, one per round.
	Rounds int
	// Interval separates the timestamps of two rounds, like a scrape interval.
	Interval time.Duration
	// Churn is the fraction of series replaced by new ones in every round
	// after the first (pods restarting), from 0 to 1.
	Churn float64
	// Start is the timestamp of the first round.
	Start time.Time
}

// DefaultConfig is one million series of 8 labels, 2 samples each (the
// first creates the series, the second appends to them), 2000
// samples per request, no churn.
func DefaultConfig() Config {
	return Config{
		Series:           1_000_000,
		Labels:           8,
		Metrics:          10,
		SeriesPerRequest: 2000,
		Rounds:           2,
		Interval:         15 * time.Second,
		Start:            time.Now().Add(-time.Minute).Truncate(time.Second),
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Series < 1:
		return fmt.Errorf("series must be at least 1, got %d", c.Series)
	case c.Labels < 2 || c.Labels > 64:
		return fmt.Errorf("labels must be between 2 and 64 (__name__ and instance at least), got %d", c.Labels)
	case c.Metrics < 1 || c.Metrics > c.Series:
		return fmt.Errorf("metrics must be between 1 and series (%d), got %d", c.Series, c.Metrics)
	case c.Series/c.Metrics >= 1<<24:
		return fmt.Errorf("at most %d series per metric name, got %d", 1<<24, c.Series/c.Metrics)
	case c.SeriesPerRequest < 1:
		return fmt.Errorf("series per request must be at least 1, got %d", c.SeriesPerRequest)
	case c.Rounds < 1:
		return fmt.Errorf("rounds must be at least 1, got %d", c.Rounds)
	case c.Interval <= 0:
		return fmt.Errorf("interval must be positive, got %s", c.Interval)
	case c.Churn < 0 || c.Churn > 1:
		return fmt.Errorf("churn must be between 0 and 1, got %g", c.Churn)
	case c.Start.IsZero():
		return errors.New("start time is not set")
	}
	return nil
}

// Payload is a built load: compressed requests per round and what a target
// must hold once all of them are stored.
type Payload struct {
	Config Config
	// Rounds holds, per round, the snappy-compressed WriteRequests in order.
	Rounds [][][]byte
	// Samples is the number of samples in all requests.
	Samples int
	// ActiveSeries is the number of distinct series written.
	ActiveSeries int
	// SamplesPerMetric and SeriesPerMetric count, per metric name
	// (MetricName(m)), the samples and the distinct series written.
	SamplesPerMetric []int
	SeriesPerMetric  []int
	// ValueSum is the sum of the values of all samples of MetricName(0).
	ValueSum float64
	// RawBytes and CompressedBytes are the protobuf and snappy sizes of all requests.
	RawBytes, CompressedBytes int64
}

// Requests is the number of requests in the payload.
func (p *Payload) Requests() int {
	n := 0
	for _, r := range p.Rounds {
		n += len(r)
	}
	return n
}

// Timestamp is the time of round r.
func (p *Payload) Timestamp(r int) time.Time {
	return p.Config.Start.Add(time.Duration(r) * p.Config.Interval)
}

// Last is the time of the last round.
func (p *Payload) Last() time.Time { return p.Timestamp(p.Config.Rounds - 1) }

// MetricName is the name of metric m.
func MetricName(m int) string { return MetricPrefix + strconv.Itoa(m) }

// extraLabels are the labels after __name__ and instance, in the shape of
// a scraped Kubernetes workload, with the number of distinct values each
// takes (derived from the host, as many series share a job or a cluster;
// 0: one pod per 4 hosts). Further labels are named label_N.
var extraLabels = []struct {
	name string
	card int
}{
	{"job", 20}, {"cluster", 3}, {"namespace", 50}, {"pod", 0}, {"container", 10}, {"region", 4},
	{"zone", 12}, {"service", 200}, {"version", 5}, {"team", 30}, {"tier", 3}, {"shard", 16},
}

// churned reports how many of the series are replaced in each round after the first.
func (c Config) churned() int { return int(float64(c.Series) * c.Churn) }

// SeriesLabels returns the labels of series i in generation g (g > 0 only for
// series replaced by churn), sorted by name as remote_write requires.
// The pair (metric, instance) identifies a series: the metric is i mod
// Metrics, the instance encodes i div Metrics and the generation.
func (c Config) SeriesLabels(i, g int) []prompb.Label {
	h := i / c.Metrics
	ls := make([]prompb.Label, 0, c.Labels)
	ls = append(ls,
		prompb.Label{Name: "__name__", Value: MetricName(i % c.Metrics)},
		prompb.Label{Name: "instance", Value: Instance(h, g)},
	)
	for k := 0; len(ls) < c.Labels; k++ {
		name, card := "label_"+strconv.Itoa(k), 7
		if k < len(extraLabels) {
			name, card = extraLabels[k].name, extraLabels[k].card
		}
		v := h / 4
		if card > 0 {
			v = h % card
		}
		ls = append(ls, prompb.Label{Name: name, Value: name + "-" + strconv.Itoa(v)})
	}
	slices.SortFunc(ls, func(a, b prompb.Label) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return ls
}

// Instance is the instance label of host h in generation g.
func Instance(h, g int) string {
	return fmt.Sprintf("10.%d.%d.%d:%d", (h>>16)&255, (h>>8)&255, h&255, 9100+g)
}

// Value is the sample value of series i in round r: an increasing counter.
func Value(i, r int) float64 { return float64((r + 1) * (1 + i%10)) }

// Build encodes the payload.
func Build(c Config) (*Payload, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("invalid load: %w", err)
	}
	p := &Payload{
		Config:           c,
		Rounds:           make([][][]byte, c.Rounds),
		SamplesPerMetric: make([]int, c.Metrics),
		SeriesPerMetric:  make([]int, c.Metrics),
	}
	churned := c.churned()
	// Labels of each series are built once and reused by later rounds.
	labelsOf := make([][]prompb.Label, c.Series)
	var raw []byte
	req := &prompb.WriteRequest{}
	for r := range c.Rounds {
		ts := p.Timestamp(r).UnixMilli()
		for first := 0; first < c.Series; first += c.SeriesPerRequest {
			last := min(first+c.SeriesPerRequest, c.Series)
			req.Timeseries = req.Timeseries[:0]
			for i := first; i < last; i++ {
				if labelsOf[i] == nil || (i < churned && r > 0) {
					g := 0
					if i < churned {
						g = r
					}
					labelsOf[i] = c.SeriesLabels(i, g)
					p.ActiveSeries++
					p.SeriesPerMetric[i%c.Metrics]++
				}
				v := Value(i, r)
				req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
					Labels:  labelsOf[i],
					Samples: []prompb.Sample{{Value: v, Timestamp: ts}},
				})
				p.Samples++
				p.SamplesPerMetric[i%c.Metrics]++
				if i%c.Metrics == 0 {
					p.ValueSum += v
				}
			}
			size := req.Size()
			if cap(raw) < size {
				raw = make([]byte, size)
			}
			raw = raw[:size]
			if _, err := req.MarshalToSizedBuffer(raw); err != nil {
				return nil, fmt.Errorf("marshal request: %w", err)
			}
			body := snappy.Encode(nil, raw)
			p.RawBytes += int64(size)
			p.CompressedBytes += int64(len(body))
			p.Rounds[r] = append(p.Rounds[r], body)
		}
	}
	return p, nil
}
