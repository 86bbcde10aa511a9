// Package hotpath is the in-memory stage every sample passes between the
// receivers and storage: the ingest limits every receiver shares (label
// limits, the accepted time window, no conflicting samples within one
// request), a bounded cache of series references so that a known series is
// appended without building, validating or hashing its labels again, a
// limit on the number of series, and stream aggregation.
package hotpath

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/alecthomas/units"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/collector"
	"github.com/vigilhq/vigil/collector/derived"
	"github.com/vigilhq/vigil/collector/streamaggr"
	"github.com/vigilhq/vigil/internal/semconv"
)

// Config configures the hot path (the `ingest:` section of vigil.yml).
type Config struct {
	// IngestLimits apply to the samples of every receiver.
	collector.IngestLimits `yaml:",inline"`
	// SeriesCacheSize bounds the series reference cache (at least 32MiB).
	SeriesCacheSize units.Base2Bytes `yaml:"series_cache_size"`
	// MaxSeries is the most series storage may hold; samples of further new
	// series are refused (0: no limit).
	MaxSeries int `yaml:"max_series"`
	// AcceptDerivedSeriesFrom names the writers (auth.tokens names, or
	// "anonymous" without authentication) that may send series Vigil
	// derives itself (span metrics, service graph, log metrics, deployment
	// and verdict series) over remote_write and OTLP: Vigil's collector
	// replicas. Everyone else's samples of those series are refused
	// (reason derived_series). Default: nobody.
	AcceptDerivedSeriesFrom []string `yaml:"accept_derived_series_from"`
	// StreamAggregation rules aggregate samples before storage (configured
	// at the top level of vigil.yml as stream_aggregation).
	StreamAggregation []streamaggr.RuleConfig `yaml:"-"`
	// Replica labels the stream aggregation outputs with the collector
	// replica (collector.replica).
	Replica string `yaml:"-"`
}

// DefaultConfig is the hot path's default configuration.
func DefaultConfig() Config {
	return Config{IngestLimits: collector.DefaultIngestLimits(), SeriesCacheSize: 64 * units.MiB, MaxSeries: 5000000}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if err := c.IngestLimits.Validate(); err != nil {
		return err
	}
	if c.SeriesCacheSize < 0 {
		return fmt.Errorf("series_cache_size must not be negative, got %s", c.SeriesCacheSize)
	}
	if c.MaxSeries < 0 {
		return fmt.Errorf("max_series must not be negative, got %d", c.MaxSeries)
	}
	for _, w := range c.AcceptDerivedSeriesFrom {
		if w == "" {
			return errors.New("accept_derived_series_from: empty writer name")
		}
	}
	for i, r := range c.StreamAggregation {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("stream_aggregation[%d]: %w", i, err)
		}
	}
	return nil
}

// Storage is where the hot path writes.
type Storage interface {
	storage.AppendableV2
	// NumSeries is the number of series storage holds in memory now.
	NumSeries() uint64
}

// Pipeline is the hot path. It is a storage.AppendableV2, so receivers
// and translators write to it as they would to storage.
type Pipeline struct {
	cfg    Config
	store  Storage
	cache  *SeriesCache
	aggr   *streamaggr.Aggregators
	logger *slog.Logger
	now    func() time.Time
	batch  *batchStates

	limited prometheus.Counter
}

// New builds the hot path in front of store.
func New(cfg Config, store Storage, logger *slog.Logger, reg prometheus.Registerer) (*Pipeline, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("hot path: storage is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Pipeline{
		cfg: cfg, store: store, logger: logger, now: time.Now, batch: newBatchStates(16),
		cache: NewSeriesCache(int(cfg.SeriesCacheSize)),
		limited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_series_limit_rejected_samples_total",
			Help: "Samples of new series refused because storage holds max_series series.",
		}),
	}
	if len(cfg.StreamAggregation) > 0 {
		aggr, err := streamaggr.New(cfg.StreamAggregation, derived.NewWriter(store, cfg.Replica), logger.With("component", "stream aggregation"), reg)
		if err != nil {
			return nil, err
		}
		p.aggr = aggr
	}
	if reg != nil {
		reg.MustRegister(p.cache, p.limited)
	}
	return p, nil
}

// Run runs stream aggregation until ctx is done, flushing once more before it returns.
func (p *Pipeline) Run(ctx context.Context) {
	if p.aggr != nil {
		p.aggr.Run(ctx)
	}
}

// IngestLimits are the limits the hot path applies to every sample; a
// receiver that must filter before it appends (OTLP, before translation)
// reads them here, so that there is one setting for every receiver.
func (p *Pipeline) IngestLimits() collector.IngestLimits { return p.cfg.IngestLimits }

// CachedRef returns the series reference remembered for a wire label key.
func (p *Pipeline) CachedRef(key []byte) (storage.SeriesRef, bool) { return p.cache.Get(key) }

// CacheRef remembers ref for a wire label key, unless the series needs the
// hot path's attention on every sample, which needs its labels: stream
// aggregation, and the check of who may write a derived series.
func (p *Pipeline) CacheRef(key []byte, ls labels.Labels, ref storage.SeriesRef) {
	if ref == 0 || semconv.Derived(ls.Get(model.MetricNameLabel)) || (p.aggr != nil && p.aggr.Matches(ls)) {
		return
	}
	p.cache.Set(key, ref)
}

// ForgetRef drops a key whose reference storage no longer knows.
func (p *Pipeline) ForgetRef(key []byte) { p.cache.Delete(key) }

// AppenderV2 starts a transaction. A sample passes the check of who may
// write derived series, the label limits, the time window (from now) and
// the in-request conflict check, then stream aggregation and the series
// limit, then storage.
func (p *Pipeline) AppenderV2(ctx context.Context) storage.AppenderV2 {
	minT, maxT := p.cfg.Window(p.now())
	var app storage.ExemplarAppenderV2 = &appender{p: p, inner: p.store.AppenderV2(ctx)}
	app = &batchAppender{ExemplarAppenderV2: app, states: p.batch}
	app = &timeLimitAppender{ExemplarAppenderV2: app, minT: minT, maxT: maxT}
	app = &labelLimitAppender{ExemplarAppenderV2: app, limits: p.cfg.IngestLimits}
	if name, ok := p.MayWriteDerived(ctx); !ok {
		app = &derivedGuard{ExemplarAppenderV2: app, writer: name}
	}
	return app
}

type appender struct {
	p     *Pipeline
	inner storage.AppenderV2
}

// Append routes a sample through stream aggregation and the series limit
// to storage. An append by reference with empty labels comes from the
// series cache and goes straight to storage.
func (a *appender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AOptions) (storage.SeriesRef, error) {
	if !ls.IsEmpty() {
		if a.p.aggr != nil && h == nil && fh == nil && a.p.aggr.Push(ls, v) {
			return 0, nil // aggregated; the rule drops the input
		}
		if ref == 0 && a.p.cfg.MaxSeries > 0 && a.p.store.NumSeries() >= uint64(a.p.cfg.MaxSeries) {
			g, ok := a.inner.(storage.GetRef)
			if !ok {
				return 0, fmt.Errorf("series limit: storage appender %T cannot look up series", a.inner)
			}
			r, _ := g.GetRef(ls, ls.Hash())
			if r == 0 {
				a.p.limited.Inc()
				return 0, fmt.Errorf("%w (max_series: %d)", collector.ErrSeriesLimit, a.p.cfg.MaxSeries)
			}
			ref = r
		}
	}
	return a.inner.Append(ref, ls, st, t, v, h, fh, opts)
}

// AppendExemplars implements storage.ExemplarAppenderV2.
func (a *appender) AppendExemplars(ref storage.SeriesRef, ls labels.Labels, es []exemplar.Exemplar) (storage.SeriesRef, error) {
	ea, ok := a.inner.(storage.ExemplarAppenderV2)
	if !ok {
		return 0, fmt.Errorf("storage appender %T does not take exemplars", a.inner)
	}
	return ea.AppendExemplars(ref, ls, es)
}

func (a *appender) Commit() error   { return a.inner.Commit() }
func (a *appender) Rollback() error { return a.inner.Rollback() }
