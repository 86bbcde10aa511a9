package streamaggr

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
)

// maxQuantileSamples bounds the values a group keeps per interval for
// quantiles; beyond it the values are a uniform reservoir sample.
const maxQuantileSamples = 4096

// Aggregators runs a set of rules, writing their outputs to out.
type Aggregators struct {
	rules  []*rule
	out    storage.AppendableV2
	logger *slog.Logger
	now    func() time.Time

	pushed   *prometheus.CounterVec
	dropped  *prometheus.CounterVec
	written  *prometheus.CounterVec
	failures *prometheus.CounterVec
	groups   *prometheus.GaugeVec
}

type outputSpec struct {
	name string
	phis []float64
}

type rule struct {
	cfg       RuleConfig
	id        string
	matchers  [][]*labels.Matcher
	outputs   []outputSpec
	suffix    string
	counters  bool // total or increase: per-input state is needed
	perInput  bool // counters or count_series
	quantiles bool // a quantiles output: sample values are kept

	// The rule's self-metrics, resolved once.
	pushed, droppedMaxSeries, written, failures prometheus.Counter
	groupsGauge                                 prometheus.Gauge

	mu       sync.Mutex
	groups   map[string]*group
	inputs   map[string]*input
	interval int64 // index of the current interval, to count series once per interval
	buf      []byte
	rng      *rand.Rand
}

type group struct {
	name string        // input metric name
	lbls labels.Labels // output labels without __name__

	count       int
	sum, min    float64
	max, last   float64
	mean, m2    float64 // Welford, for stddev
	increase    float64
	total       float64
	series      int
	values      []float64
	seenValues  int
	updated     time.Time
	everWritten bool
}

type input struct {
	g        *group
	last     float64
	seen     time.Time
	interval int64
}

// New validates the rules and builds their aggregators. Outputs are
// appended to out.
func New(cfgs []RuleConfig, out storage.AppendableV2, logger *slog.Logger, reg prometheus.Registerer) (*Aggregators, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &Aggregators{
		out: out, logger: logger, now: time.Now,
		pushed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_stream_aggregation_samples_total", Help: "Samples fed to each stream aggregation rule.",
		}, []string{"rule"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_stream_aggregation_dropped_samples_total", Help: "Samples a stream aggregation rule could not aggregate, by reason.",
		}, []string{"rule", "reason"}),
		written: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_stream_aggregation_output_samples_total", Help: "Output samples written by each stream aggregation rule.",
		}, []string{"rule"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_stream_aggregation_flush_failures_total", Help: "Flushes of a stream aggregation rule that storage refused.",
		}, []string{"rule"}),
		groups: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vigil_stream_aggregation_groups", Help: "Output groups each stream aggregation rule holds.",
		}, []string{"rule"}),
	}
	if reg != nil {
		reg.MustRegister(a.pushed, a.dropped, a.written, a.failures, a.groups)
	}
	p := parser.NewParser(parser.Options{})
	for i, c := range cfgs {
		if err := c.Validate(); err != nil {
			return nil, fmt.Errorf("stream_aggregation[%d]: %w", i, err)
		}
		id := strconv.Itoa(i)
		r := &rule{
			cfg: c, id: id, suffix: c.suffix(), groups: map[string]*group{}, inputs: map[string]*input{}, rng: rand.New(rand.NewPCG(uint64(i), 1)),
			pushed: a.pushed.WithLabelValues(id), droppedMaxSeries: a.dropped.WithLabelValues(id, "max_series"),
			written: a.written.WithLabelValues(id), failures: a.failures.WithLabelValues(id), groupsGauge: a.groups.WithLabelValues(id),
		}
		for _, m := range c.Match {
			ms, err := p.ParseMetricSelector(m)
			if err != nil {
				return nil, fmt.Errorf("stream_aggregation[%d].match %q: %w", i, m, err)
			}
			r.matchers = append(r.matchers, ms)
		}
		for _, o := range c.Outputs {
			name, phis, _ := parseOutput(o)
			r.outputs = append(r.outputs, outputSpec{name: name, phis: phis})
			switch name {
			case OutputTotal, OutputIncrease:
				r.counters, r.perInput = true, true
			case OutputCountSeries:
				r.perInput = true
			case OutputQuantiles:
				r.quantiles = true
			}
		}
		a.rules = append(a.rules, r)
	}
	return a, nil
}

// Len is the number of rules.
func (a *Aggregators) Len() int { return len(a.rules) }

func (r *rule) matches(ls labels.Labels) bool {
	for _, ms := range r.matchers {
		ok := true
		for _, m := range ms {
			if !m.Matches(ls.Get(m.Name)) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// Matches reports whether any rule selects ls.
func (a *Aggregators) Matches(ls labels.Labels) bool {
	for _, r := range a.rules {
		if r.matches(ls) {
			return true
		}
	}
	return false
}

// Push feeds a float sample to every rule that selects its series and
// reports whether the input sample should be dropped rather than stored.
func (a *Aggregators) Push(ls labels.Labels, v float64) (drop bool) {
	if value.IsStaleNaN(v) {
		return false
	}
	now := a.now()
	for _, r := range a.rules {
		if !r.matches(ls) {
			continue
		}
		r.pushed.Inc()
		if !r.push(ls, v, now) {
			r.droppedMaxSeries.Inc()
		}
		drop = drop || r.cfg.DropInput
	}
	return drop
}

// outputLabels builds the group labels of ls under the rule's by/without.
func (r *rule) outputLabels(ls labels.Labels) labels.Labels {
	b := labels.NewScratchBuilder(8)
	switch {
	case len(r.cfg.By) > 0:
		for _, name := range r.cfg.By {
			if v := ls.Get(name); v != "" {
				b.Add(name, v)
			}
		}
		if r.cfg.keepVersion() && !slices.Contains(r.cfg.By, "version") {
			if v := ls.Get("version"); v != "" {
				b.Add("version", v)
			}
		}
	default:
		ls.Range(func(l labels.Label) {
			if l.Name == model.MetricNameLabel {
				return
			}
			if slices.Contains(r.cfg.Without, l.Name) {
				return
			}
			b.Add(l.Name, l.Value)
		})
	}
	b.Sort()
	return b.Labels()
}

func (r *rule) push(ls labels.Labels, v float64, now time.Time) bool {
	name := ls.Get(model.MetricNameLabel)
	out := r.outputLabels(ls)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = append(r.buf[:0], name...)
	r.buf = append(r.buf, 0xff)
	r.buf = out.Bytes(r.buf)
	g, ok := r.groups[string(r.buf)]
	if !ok {
		if len(r.groups) >= r.cfg.maxSeries() {
			return false
		}
		g = &group{name: name, lbls: out}
		g.resetInterval()
		r.groups[string(r.buf)] = g
	}
	g.updated = now
	g.count++
	g.sum += v
	g.min = math.Min(g.min, v)
	g.max = math.Max(g.max, v)
	g.last = v
	delta := v - g.mean
	g.mean += delta / float64(g.count)
	g.m2 += delta * (v - g.mean)
	if r.quantiles {
		g.seenValues++
		if len(g.values) < maxQuantileSamples {
			g.values = append(g.values, v)
		} else if j := r.rng.IntN(g.seenValues); j < maxQuantileSamples {
			g.values[j] = v
		}
	}
	if r.perInput {
		key := string(ls.Bytes(r.buf[:0]))
		in, ok := r.inputs[key]
		switch {
		case !ok:
			if len(r.inputs) >= 10*r.cfg.maxSeries() {
				return false
			}
			// The first sample of a series only sets its baseline: its value
			// may include increases from before Vigil saw the series.
			r.inputs[key] = &input{g: g, last: v, seen: now, interval: r.interval}
			g.series++
		default:
			if r.counters {
				d := v - in.last
				if d < 0 { // counter reset
					d = v
				}
				g.increase += d
				g.total += d
			}
			in.last, in.seen = v, now
			if in.interval != r.interval {
				in.interval = r.interval
				g.series++
			}
			in.g = g
		}
	}
	return true
}

func (g *group) resetInterval() {
	g.count, g.sum, g.increase, g.series, g.seenValues = 0, 0, 0, 0, 0
	g.min, g.max = math.Inf(1), math.Inf(-1)
	g.mean, g.m2 = 0, 0
	g.values = g.values[:0]
}

// Run flushes every rule at each multiple of its interval until ctx is
// done, then flushes the partial interval once more and returns.
func (a *Aggregators) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, r := range a.rules {
		wg.Add(1)
		go func() {
			defer wg.Done()
			iv := time.Duration(r.cfg.Interval)
			for {
				now := a.now()
				next := now.Truncate(iv).Add(iv)
				select {
				case <-ctx.Done():
					a.flush(r, a.now())
					return
				case <-time.After(next.Sub(now)):
					a.flush(r, next)
				}
			}
		}()
	}
	wg.Wait()
}

// FlushAll writes every rule's outputs now (for tests and shutdown).
func (a *Aggregators) FlushAll(at time.Time) {
	for _, r := range a.rules {
		a.flush(r, at)
	}
}

type outSample struct {
	ls labels.Labels
	v  float64
}

func (a *Aggregators) flush(r *rule, at time.Time) {
	r.mu.Lock()
	var out []outSample
	staleAfter := r.cfg.staleness()
	for key, g := range r.groups {
		active := g.count > 0
		stale := at.Sub(g.updated) > staleAfter
		for _, o := range r.outputs {
			name := g.name + r.suffix + "_" + o.name
			switch {
			case stale:
				if g.everWritten {
					for _, ls := range outputSeries(name, g.lbls, o) {
						out = append(out, outSample{ls, math.Float64frombits(value.StaleNaN)})
					}
				}
			case o.name == OutputTotal:
				// A running total is written every interval while its inputs live.
				out = append(out, outSample{withName(name, g.lbls), g.total})
			case !active:
			case o.name == OutputQuantiles:
				sorted := slices.Clone(g.values)
				slices.Sort(sorted)
				for _, phi := range o.phis {
					ls := labels.NewBuilder(withName(name, g.lbls)).Set("quantile", strconv.FormatFloat(phi, 'g', -1, 64)).Labels()
					out = append(out, outSample{ls, quantile(phi, sorted)})
				}
			default:
				out = append(out, outSample{withName(name, g.lbls), g.value(o.name)})
			}
		}
		if stale {
			delete(r.groups, key)
			continue
		}
		if active {
			g.everWritten = true
		}
		g.resetInterval()
	}
	for key, in := range r.inputs {
		if at.Sub(in.seen) > staleAfter {
			delete(r.inputs, key)
		}
	}
	r.interval++
	r.groupsGauge.Set(float64(len(r.groups)))
	r.mu.Unlock()

	if len(out) == 0 {
		return
	}
	app := a.out.AppenderV2(context.Background())
	t := at.UnixMilli()
	for _, s := range out {
		if _, err := app.Append(0, s.ls, 0, t, s.v, nil, nil, storage.AOptions{}); err != nil {
			a.logger.Debug("Stream aggregation output refused", "rule", r.id, "series", s.ls.String(), "err", err)
		}
	}
	if err := app.Commit(); err != nil {
		r.failures.Inc()
		a.logger.Error("Writing stream aggregation outputs failed", "rule", r.id, "err", err)
		return
	}
	r.written.Add(float64(len(out)))
}

func (g *group) value(output string) float64 {
	switch output {
	case OutputIncrease:
		return g.increase
	case OutputCountSamples:
		return float64(g.count)
	case OutputSumSamples:
		return g.sum
	case OutputCountSeries:
		return float64(g.series)
	case OutputMin:
		return g.min
	case OutputMax:
		return g.max
	case OutputAvg:
		return g.sum / float64(g.count)
	case OutputLast:
		return g.last
	case OutputStddev:
		return math.Sqrt(g.m2 / float64(g.count))
	}
	return math.NaN()
}

func withName(name string, ls labels.Labels) labels.Labels {
	return labels.NewBuilder(ls).Set(model.MetricNameLabel, name).Labels()
}

func outputSeries(name string, ls labels.Labels, o outputSpec) []labels.Labels {
	if o.name != OutputQuantiles {
		return []labels.Labels{withName(name, ls)}
	}
	var out []labels.Labels
	for _, phi := range o.phis {
		out = append(out, labels.NewBuilder(withName(name, ls)).Set("quantile", strconv.FormatFloat(phi, 'g', -1, 64)).Labels())
	}
	return out
}

// quantile is the phi-quantile of sorted values, interpolating linearly
// between the closest ranks as PromQL's quantile() does.
func quantile(phi float64, sorted []float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := phi * float64(len(sorted)-1)
	lo := int(math.Floor(rank))
	hi := min(lo+1, len(sorted)-1)
	w := rank - float64(lo)
	return sorted[lo]*(1-w) + sorted[hi]*w
}
