package otlp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	otlptranslator "github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"go.opentelemetry.io/collector/pdata/pcommon"
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

// MetricsStorage is where metrics go: the hot path, which appends through
// the ingest limits every receiver shares and tells the receiver the
// window of timestamps it accepts, so that points outside it are dropped
// before translation (a point from 1970 would otherwise make target_info
// span fifty years of samples).
type MetricsStorage interface {
	storage.AppendableV2
	IngestLimits() collector.IngestLimits
}

// Consumers are where the receiver sends each signal. A nil consumer
// accepts and drops its signal.
type Consumers struct {
	Metrics  MetricsStorage
	Metadata collector.MetadataSink
	Traces   TracesConsumer
	Logs     LogsConsumer
}

// SetLimiter makes both transports take a processing slot from l once a
// request is read (call before Start and HTTPHandler).
func (r *Receiver) SetLimiter(l *collector.Limiter) {
	r.limiter = l
	l.Register(ReceiverName)
}

// Receiver is the OTLP receiver, shared by the gRPC and HTTP transports.
type Receiver struct {
	limiter  *collector.Limiter // nil: no admission limit
	security Security
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
	limits := r.cons.Metrics.IngestLimits()
	rejectedDelta, deltaNames := dropDeltaMetrics(md)
	now := time.Now()
	out := dropOutOfWindow(md, now.Add(-time.Duration(limits.MaxSampleAge)), now.Add(time.Duration(limits.MaxSampleFuture)))
	copyVersionAttribute(md)

	app := &countingAppender{inner: r.cons.Metrics.AppenderV2(ctx), md: r.cons.Metadata}
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
	if rejectedDelta > 0 {
		app.rejected.Add(collector.ReasonDeltaTemporality, int(rejectedDelta), func() string {
			return fmt.Sprintf("metrics with delta temporality (%s): Vigil stores cumulative series; set the SDK's temporality preference to cumulative (OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=cumulative)", strings.Join(deltaNames, ", "))
		})
	}
	if out.old > 0 {
		app.rejected.Add(collector.ReasonTooOld, out.old, func() string {
			return fmt.Sprintf("a data point @%d is older than ingest.max_sample_age (%s)", out.firstOld.AsTime().UnixMilli(), limits.MaxSampleAge)
		})
	}
	if out.future > 0 {
		app.rejected.Add(collector.ReasonFuture, out.future, func() string {
			return fmt.Sprintf("a data point @%d is more than ingest.max_sample_future (%s) ahead of Vigil's clock", out.firstFuture.AsTime().UnixMilli(), limits.MaxSampleFuture)
		})
	}
	app.rejected.Count(r.metrics, ReceiverName)
	msg := app.rejected.Summary()
	if err != nil {
		msg = strings.TrimPrefix(msg+"; translation: "+err.Error(), "; ")
	}
	if ws, _ := annots.AsStrings("", 5, 0); len(ws) > 0 {
		r.logger.Debug("OTLP translation warnings", "warnings", ws)
	}
	res.rejected = int64(app.rejected.Total())
	res.accepted = app.floats + app.histograms
	res.message = msg
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

// outOfWindow counts the data points dropped for their timestamps.
type outOfWindow struct {
	old, future           int
	firstOld, firstFuture pcommon.Timestamp
}

// dropOutOfWindow removes data points stamped before minT or after maxT
// and counts them. A point without a timestamp is stamped with the time
// of receipt.
func dropOutOfWindow(md pmetric.Metrics, minT, maxT time.Time) (out outOfWindow) {
	lo, hi := pcommon.NewTimestampFromTime(minT), pcommon.NewTimestampFromTime(maxT)
	now := pcommon.NewTimestampFromTime(time.Now())
	keep := func(ts pcommon.Timestamp) bool {
		switch {
		case ts == 0:
			return true
		case ts < lo:
			if out.old++; out.old == 1 {
				out.firstOld = ts
			}
			return false
		case ts > hi:
			if out.future++; out.future == 1 {
				out.firstFuture = ts
			}
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
	return out
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
		if v, ok := attrs.Get(collector.AttrServiceVersion); ok {
			if s := collector.ValueString(v); s != "" {
				attrs.PutStr(versionAttr, s)
			}
		}
	}
}

// countingAppender lets the translator carry on past samples the hot
// path or storage refuses, counting them by reason, and records metric
// metadata.
type countingAppender struct {
	inner      storage.AppenderV2
	md         collector.MetadataSink
	floats     int64
	histograms int64
	rejected   collector.Rejections
	storageErr error
}

func (a *countingAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AOptions) (storage.SeriesRef, error) {
	if a.storageErr != nil {
		return 0, a.storageErr
	}
	if a.md != nil && (opts.Metadata.Type != "" || opts.Metadata.Help != "") {
		family := opts.MetricFamilyName
		if family == "" {
			family = ls.Get(model.MetricNameLabel)
		}
		a.md.Set(family, opts.Metadata)
	}
	r, err := a.inner.Append(ref, ls, st, t, v, h, fh, opts)
	if err == nil || collector.IsPartial(err) {
		if h != nil || fh != nil {
			a.histograms++
		} else {
			a.floats++
		}
		return r, nil
	}
	reason := collector.ReasonOf(err)
	if reason == "" {
		a.storageErr = err
		return 0, err
	}
	a.rejected.Add(reason, 1, func() string { return fmt.Sprintf("%s @%d: %v", ls, t, err) })
	return 0, nil
}

func (a *countingAppender) AppendExemplars(ref storage.SeriesRef, ls labels.Labels, es []exemplar.Exemplar) (storage.SeriesRef, error) {
	if ea, ok := a.inner.(storage.ExemplarAppenderV2); ok {
		return ea.AppendExemplars(ref, ls, es)
	}
	return ref, nil
}

func (a *countingAppender) Commit() error   { return a.inner.Commit() }
func (a *countingAppender) Rollback() error { return a.inner.Rollback() }

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
