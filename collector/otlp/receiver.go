package otlp

import (
	"context"
	"errors"
	"fmt"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"log/slog"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	otlptranslator "github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"github.com/prometheus/prometheus/tsdb"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/vigilhq/vigil/collector"
)

// ReceiverName is the "receiver" label of the OTLP ingest metrics.
const ReceiverName = "otlp"

// versionAttr is the resource attribute service.version is copied to before
// translation, so that the translator promotes it as the label "version".
const versionAttr = "version"

// TracesConsumer takes the spans of a request (span metrics, forwarding).
type TracesConsumer interface {
	ConsumeTraces(ctx context.Context, td ptrace.Traces) error
}

// LogsConsumer takes the log records of a request (log metrics, forwarding).
type LogsConsumer interface {
	ConsumeLogs(ctx context.Context, ld plog.Logs) error
}

// MetadataSink keeps metric metadata.
type MetadataSink interface {
	Set(family string, m metadata.Metadata)
}

// Consumers are where the receiver sends each signal. A nil consumer
// accepts and drops its signal.
type Consumers struct {
	Metrics  storage.AppendableV2
	Metadata MetadataSink
	Traces   TracesConsumer
	Logs     LogsConsumer
}

// SetLimiter makes both transports admit requests through l (call before
// Start and HTTPHandler).
func (r *Receiver) SetLimiter(l *collector.Limiter) { r.limiter = l }

// Receiver is the OTLP receiver, shared by the gRPC and HTTP transports.
type Receiver struct {
	limiter  *collector.Limiter // nil: no admission limit
	cfg      Config
	cons     Consumers
	metrics  *collector.Metrics
	logger   *slog.Logger
	promote  *otlptranslator.PromoteResourceAttributes
	convPool sync.Pool
}

// New builds the receiver. It does not listen until Start.
func New(cfg Config, cons Consumers, metrics *collector.Metrics, logger *slog.Logger) (*Receiver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("otlp receiver: %w", err)
	}
	if metrics == nil {
		return nil, errors.New("otlp receiver: metrics are required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	attrs := append([]string{versionAttr}, cfg.PromoteResourceAttributes...)
	r := &Receiver{
		cfg: cfg, cons: cons, metrics: metrics, logger: logger,
		promote: otlptranslator.NewPromoteResourceAttributes(config.OTLPConfig{PromoteResourceAttributes: attrs}),
	}
	r.convPool.New = func() any { return otlptranslator.NewPrometheusConverter(nil) }
	return r, nil
}

// result is what one export request did, for the partial-success response.
type result struct {
	accepted int64
	rejected int64
	message  string
}

// errUnavailable marks failures the client should retry (storage failed).
var errUnavailable = errors.New("storage unavailable")

// consumeMetrics translates and stores metrics. Data points storage
// refuses (out of order, duplicate, series limit) and metrics Vigil cannot
// store (delta temporality) are counted as rejected, with a message; the
// rest is committed. An error means nothing was committed.
func (r *Receiver) consumeMetrics(ctx context.Context, md pmetric.Metrics) (result, error) {
	var res result
	if r.cons.Metrics == nil {
		res.accepted = int64(md.DataPointCount())
		return res, nil
	}
	rejectedDelta, deltaNames := dropDeltaMetrics(md)
	now := time.Now()
	tooOld, tooNew := dropOutOfWindow(md, now.Add(-time.Duration(r.cfg.MaxSampleAge)), now.Add(time.Duration(r.cfg.MaxSampleFuture)))
	copyVersionAttribute(md)

	app := &countingAppender{inner: r.cons.Metrics.AppenderV2(ctx), md: r.cons.Metadata, reasons: map[string]*rejection{}}
	conv := r.convPool.Get().(*otlptranslator.PrometheusConverter)
	conv.Reset(app)
	defer func() {
		conv.Reset(nil)
		r.convPool.Put(conv)
	}()
	annots, err := conv.FromMetrics(ctx, md, otlptranslator.Settings{
		AddMetricSuffixes:                 true,
		PromoteResourceAttributes:         r.promote,
		KeepIdentifyingResourceAttributes: r.cfg.KeepIdentifyingResourceAttributes,
	})
	if app.storageErr != nil {
		_ = app.Rollback()
		return res, fmt.Errorf("%w: %v", errUnavailable, app.storageErr)
	}
	if err := app.Commit(); err != nil {
		return res, fmt.Errorf("%w: commit: %v", errUnavailable, err)
	}
	var msgs []string
	if rejectedDelta > 0 {
		msgs = append(msgs, fmt.Sprintf("%d data points of metrics with delta temporality (%s) rejected: Vigil stores cumulative series; set the SDK's temporality preference to cumulative (OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=cumulative)", rejectedDelta, strings.Join(deltaNames, ", ")))
		r.metrics.Rejected.WithLabelValues(ReceiverName, "delta_temporality").Add(float64(rejectedDelta))
	}
	if tooOld > 0 {
		msgs = append(msgs, fmt.Sprintf("%s: %d data points older than max_sample_age (%s)", collector.ReasonTooOld, tooOld, r.cfg.MaxSampleAge))
		r.metrics.Rejected.WithLabelValues(ReceiverName, collector.ReasonTooOld).Add(float64(tooOld))
	}
	if tooNew > 0 {
		msgs = append(msgs, fmt.Sprintf("%s: %d data points more than max_sample_future (%s) ahead of Vigil's clock", collector.ReasonFuture, tooNew, r.cfg.MaxSampleFuture))
		r.metrics.Rejected.WithLabelValues(ReceiverName, collector.ReasonFuture).Add(float64(tooNew))
	}
	if err != nil {
		msgs = append(msgs, "translation: "+err.Error())
	}
	for _, reason := range app.order {
		p := app.reasons[reason]
		msgs = append(msgs, fmt.Sprintf("%s: %d, first: %s", reason, p.count, p.example))
		r.metrics.Rejected.WithLabelValues(ReceiverName, reason).Add(float64(p.count))
	}
	if ws, _ := annots.AsStrings("", 5, 0); len(ws) > 0 {
		r.logger.Debug("OTLP translation warnings", "warnings", ws)
	}
	res.rejected = rejectedDelta + tooOld + tooNew + app.rejected
	res.accepted = app.floats + app.histograms
	res.message = strings.Join(msgs, "; ")
	r.metrics.Samples.WithLabelValues(ReceiverName, "float").Add(float64(app.floats))
	r.metrics.Samples.WithLabelValues(ReceiverName, "histogram").Add(float64(app.histograms))
	return res, nil
}

// dropDeltaMetrics removes metrics with delta temporality, which a
// cumulative store cannot hold faithfully, and returns how many data points
// were removed and the metric names.
func dropDeltaMetrics(md pmetric.Metrics) (int64, []string) {
	var (
		n     int64
		names = map[string]struct{}{}
	)
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		sms := rms.At(i).ScopeMetrics()
		for j := range sms.Len() {
			sms.At(j).Metrics().RemoveIf(func(m pmetric.Metric) bool {
				var count int
				switch m.Type() {
				case pmetric.MetricTypeSum:
					if m.Sum().AggregationTemporality() != pmetric.AggregationTemporalityDelta {
						return false
					}
					count = m.Sum().DataPoints().Len()
				case pmetric.MetricTypeHistogram:
					if m.Histogram().AggregationTemporality() != pmetric.AggregationTemporalityDelta {
						return false
					}
					count = m.Histogram().DataPoints().Len()
				case pmetric.MetricTypeExponentialHistogram:
					if m.ExponentialHistogram().AggregationTemporality() != pmetric.AggregationTemporalityDelta {
						return false
					}
					count = m.ExponentialHistogram().DataPoints().Len()
				default:
					return false
				}
				n += int64(count)
				names[m.Name()] = struct{}{}
				return true
			})
		}
	}
	out := make([]string, 0, len(names))
	for name := range names {
		out = append(out, name)
	}
	sort.Strings(out)
	if len(out) > 5 {
		out = append(out[:5], fmt.Sprintf("and %d more", len(out)-5))
	}
	return n, out
}

// dropOutOfWindow removes data points stamped before minT or after maxT
// and counts them. A point without a timestamp is stamped with the time
// of receipt.
func dropOutOfWindow(md pmetric.Metrics, minT, maxT time.Time) (old, future int64) {
	lo, hi := pcommon.NewTimestampFromTime(minT), pcommon.NewTimestampFromTime(maxT)
	now := pcommon.NewTimestampFromTime(time.Now())
	keep := func(ts pcommon.Timestamp) bool {
		switch {
		case ts == 0:
			return true
		case ts < lo:
			old++
			return false
		case ts > hi:
			future++
			return false
		}
		return true
	}
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		sms := rms.At(i).ScopeMetrics()
		for j := range sms.Len() {
			ms := sms.At(j).Metrics()
			for k := range ms.Len() {
				m := ms.At(k)
				switch m.Type() {
				case pmetric.MetricTypeGauge:
					m.Gauge().DataPoints().RemoveIf(func(dp pmetric.NumberDataPoint) bool { return stampZero(dp, now) || !keep(dp.Timestamp()) })
				case pmetric.MetricTypeSum:
					m.Sum().DataPoints().RemoveIf(func(dp pmetric.NumberDataPoint) bool { return stampZero(dp, now) || !keep(dp.Timestamp()) })
				case pmetric.MetricTypeHistogram:
					m.Histogram().DataPoints().RemoveIf(func(dp pmetric.HistogramDataPoint) bool { return stampZero(dp, now) || !keep(dp.Timestamp()) })
				case pmetric.MetricTypeExponentialHistogram:
					m.ExponentialHistogram().DataPoints().RemoveIf(func(dp pmetric.ExponentialHistogramDataPoint) bool {
						return stampZero(dp, now) || !keep(dp.Timestamp())
					})
				case pmetric.MetricTypeSummary:
					m.Summary().DataPoints().RemoveIf(func(dp pmetric.SummaryDataPoint) bool { return stampZero(dp, now) || !keep(dp.Timestamp()) })
				}
			}
		}
	}
	return old, future
}

// stampZero gives a point without a timestamp the time of receipt. It
// never removes the point.
func stampZero(dp interface {
	Timestamp() pcommon.Timestamp
	SetTimestamp(pcommon.Timestamp)
}, now pcommon.Timestamp) bool {
	if dp.Timestamp() == 0 {
		dp.SetTimestamp(now)
	}
	return false
}

// copyVersionAttribute copies service.version to the resource attribute
// "version", which the translator then promotes to the label "version".
func copyVersionAttribute(md pmetric.Metrics) {
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		attrs := rms.At(i).Resource().Attributes()
		if v, ok := attrs.Get(collector.AttrServiceVersion); ok && v.AsString() != "" {
			attrs.PutStr(versionAttr, v.AsString())
		}
	}
}

type rejection struct {
	count   int64
	example string
}

// countingAppender lets the translator carry on past samples storage
// refuses, counting them by reason, and records metric metadata.
type countingAppender struct {
	inner      storage.AppenderV2
	md         MetadataSink
	floats     int64
	histograms int64
	rejected   int64
	reasons    map[string]*rejection
	order      []string
	storageErr error
	last       map[storage.SeriesRef]lastSample
}

func (a *countingAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AOptions) (storage.SeriesRef, error) {
	if a.storageErr != nil {
		return 0, a.storageErr
	}
	if a.md != nil && (opts.Metadata.Type != "" || opts.Metadata.Help != "") {
		family := opts.MetricFamilyName
		if family == "" {
			family = ls.Get(labels.MetricName)
		}
		a.md.Set(family, opts.Metadata)
	}
	r, err := a.inner.Append(ref, ls, st, t, v, h, fh, opts)
	if err == nil && h == nil && fh == nil && r != 0 {
		// The head checks a sample against committed samples only; two
		// points of one series in one request (SDKs batch) that share a
		// millisecond would be dropped silently at commit. Count them here.
		if reason := a.inBatch(r, t, v); reason != "" {
			a.reject(reason, ls, t, fmt.Errorf("%s within one request: sample at %d, value %v", strings.ReplaceAll(reason, "_", " "), t, v))
			return r, nil
		}
	}
	if err == nil || isPartial(err) {
		if h != nil || fh != nil {
			a.histograms++
		} else {
			a.floats++
		}
		return r, nil
	}
	reason := sampleRejection(err)
	if reason == "" {
		a.storageErr = err
		return 0, err
	}
	a.reject(reason, ls, t, err)
	return 0, nil
}

func (a *countingAppender) reject(reason string, ls labels.Labels, t int64, err error) {
	a.rejected++
	p, ok := a.reasons[reason]
	if !ok {
		p = &rejection{example: fmt.Sprintf("%s @%d: %v", ls, t, err)}
		a.reasons[reason] = p
		a.order = append(a.order, reason)
	}
	p.count++
}

type lastSample struct {
	t int64
	v float64
}

// inBatch remembers the newest float sample of each series in this request
// and names why the sample at t would not survive commit.
func (a *countingAppender) inBatch(ref storage.SeriesRef, t int64, v float64) string {
	if a.last == nil {
		a.last = map[storage.SeriesRef]lastSample{}
	}
	prev, ok := a.last[ref]
	switch {
	case !ok || t > prev.t:
		a.last[ref] = lastSample{t, v}
		return ""
	case t == prev.t && math.Float64bits(v) == math.Float64bits(prev.v):
		return "" // an exact duplicate is harmless
	case t == prev.t:
		return collector.ReasonDuplicate
	default:
		return collector.ReasonOutOfOrder
	}
}

func (a *countingAppender) AppendExemplars(ref storage.SeriesRef, ls labels.Labels, es []exemplar.Exemplar) (storage.SeriesRef, error) {
	if ea, ok := a.inner.(storage.ExemplarAppenderV2); ok {
		return ea.AppendExemplars(ref, ls, es)
	}
	return ref, nil
}

func (a *countingAppender) Commit() error   { return a.inner.Commit() }
func (a *countingAppender) Rollback() error { return a.inner.Rollback() }

func isPartial(err error) bool {
	var pErr *storage.AppendPartialError
	return errors.As(err, &pErr)
}

// sampleRejection names why storage refused a sample, or "" when storage failed.
func sampleRejection(err error) string {
	switch {
	case errors.Is(err, storage.ErrOutOfOrderSample):
		return collector.ReasonOutOfOrder
	case errors.Is(err, storage.ErrTooOldSample):
		return collector.ReasonTooOld
	case errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
		return collector.ReasonDuplicate
	case errors.Is(err, storage.ErrOutOfBounds):
		return collector.ReasonOutOfBounds
	case errors.Is(err, collector.ErrDerivedSeries):
		return collector.ReasonDerivedSeries
	case errors.Is(err, collector.ErrSeriesLimit):
		return collector.ReasonSeriesLimit
	case errors.Is(err, tsdb.ErrInvalidSample), isHistogramError(err):
		return collector.ReasonInvalidSample
	}
	return ""
}

func isHistogramError(err error) bool {
	var e histogram.Error
	return errors.As(err, &e)
}

func (r *Receiver) consumeTraces(ctx context.Context, td ptrace.Traces) (result, error) {
	n := int64(td.SpanCount())
	if r.cons.Traces != nil {
		if err := r.cons.Traces.ConsumeTraces(ctx, td); err != nil {
			return result{}, err
		}
	}
	r.metrics.Samples.WithLabelValues(ReceiverName, "span").Add(float64(n))
	return result{accepted: n}, nil
}

func (r *Receiver) consumeLogs(ctx context.Context, ld plog.Logs) (result, error) {
	n := int64(ld.LogRecordCount())
	if r.cons.Logs != nil {
		if err := r.cons.Logs.ConsumeLogs(ctx, ld); err != nil {
			return result{}, err
		}
	}
	r.metrics.Samples.WithLabelValues(ReceiverName, "log_record").Add(float64(n))
	return result{accepted: n}, nil
}
