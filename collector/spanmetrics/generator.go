package spanmetrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/vigilhq/vigil/collector"
	"github.com/vigilhq/vigil/collector/derived"
	"github.com/vigilhq/vigil/collector/evidence"
	"github.com/vigilhq/vigil/internal/semconv"
)

// overflowSpanName replaces the span name of spans past max_series.
const overflowSpanName = "_other_"

// ErrorSpan is an error span kept as evidence.
type ErrorSpan struct {
	TraceID       string            `json:"traceID"`
	SpanID        string            `json:"spanID"`
	SpanName      string            `json:"spanName"`
	Root          bool              `json:"root"`
	Kind          string            `json:"kind"`
	DurationMs    float64           `json:"durationMs"`
	StatusMessage string            `json:"statusMessage,omitempty"`
	Exception     string            `json:"exception,omitempty"`
	Attributes    map[string]string `json:"attributes,omitempty"`
}

// evidenceAttributes are the span attributes worth quoting in evidence.
var evidenceAttributes = []string{"http.route", "http.request.method", "http.response.status_code", "http.status_code", "url.path", "rpc.method", "rpc.service", "db.system", "server.address", "peer.service"}

// Generator derives span metrics. It is a traces consumer for the OTLP
// receiver and writes to storage on its flush interval.
type Generator struct {
	cfg    Config
	out    storage.AppendableV2
	logger *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	series  map[string]*series
	key     []byte
	pending map[pendingKey]pendingSpan
	edges   *derived.Counters
	failed  *derived.Counters

	errors *evidence.Rings[ErrorSpan]

	spans      prometheus.Counter
	overflow   prometheus.Counter
	unpaired   *prometheus.CounterVec
	seriesG    prometheus.GaugeFunc
	flushErrs  prometheus.Counter
	flushed    prometheus.Counter
	flushTimer prometheus.Histogram
}

type series struct {
	ls      labels.Labels // without __name__
	calls   float64
	hist    prometheus.Histogram
	updated time.Time
	written bool
	// The newest span, kept raw and turned into an exemplar at flush so
	// that the per-span path does not allocate.
	ex exemplarSpan
}

type exemplarSpan struct {
	set   bool
	trace pcommon.TraceID
	span  pcommon.SpanID
	value float64
	ts    int64
}

func (e exemplarSpan) exemplar() *exemplar.Exemplar {
	if !e.set {
		return nil
	}
	return &exemplar.Exemplar{
		Labels: labels.FromStrings("span_id", e.span.String(), "trace_id", e.trace.String()),
		Value:  e.value, Ts: e.ts, HasTs: true,
	}
}

type pendingKey struct {
	trace pcommon.TraceID
	span  pcommon.SpanID
}

type pendingSpan struct {
	id      collector.Identity
	failed  bool
	client  bool // a client span waiting for its server, else a server waiting for its client
	arrived time.Time
}

// New builds a generator writing to out.
func New(cfg Config, out storage.AppendableV2, logger *slog.Logger, reg prometheus.Registerer) (*Generator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("span_metrics: %w", err)
	}
	if out == nil {
		return nil, errors.New("span_metrics: storage is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	exp := time.Duration(cfg.Expiration)
	g := &Generator{
		cfg: cfg, out: out, logger: logger, now: time.Now,
		series:  map[string]*series{},
		pending: map[pendingKey]pendingSpan{},
		edges:   derived.NewCounters(semconv.ServiceGraphRequests, cfg.ServiceGraph.MaxEdges, exp),
		failed:  derived.NewCounters(semconv.ServiceGraphFailed, cfg.ServiceGraph.MaxEdges, exp),
		errors:  evidence.New[ErrorSpan]("error_traces", cfg.ErrorTraces.PerService, cfg.ErrorTraces.MaxKeys, reg),
		spans: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_span_metrics_spans_total", Help: "Spans turned into span metrics.",
		}),
		overflow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_span_metrics_overflow_spans_total", Help: "Spans counted under span_name=\"_other_\" because span metrics hold max_series series.",
		}),
		unpaired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_service_graph_unpaired_spans_total", Help: "Client or server spans whose other side did not arrive, by reason (expired, full).",
		}, []string{"reason"}),
		flushErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_span_metrics_flush_failures_total", Help: "Span metric flushes storage refused.",
		}),
		flushed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_span_metrics_samples_written_total", Help: "Samples of span and service graph metrics written to storage.",
		}),
		flushTimer: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "vigil_span_metrics_flush_duration_seconds", Help: "Time to write span metrics to storage.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
	}
	g.seriesG = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "vigil_span_metrics_series", Help: "Span metric series held in memory.",
	}, func() float64 {
		g.mu.Lock()
		defer g.mu.Unlock()
		return float64(len(g.series))
	})
	if reg != nil {
		reg.MustRegister(g.spans, g.overflow, g.unpaired, g.seriesG, g.flushErrs, g.flushed, g.flushTimer)
	}
	return g, nil
}

// ErrorTraces are the recent error spans per service version.
func (g *Generator) ErrorTraces() *evidence.Rings[ErrorSpan] { return g.errors }

// ConsumeTraces derives metrics from every span of td.
func (g *Generator) ConsumeTraces(_ context.Context, td ptrace.Traces) error {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	rss := td.ResourceSpans()
	for i := range rss.Len() {
		rs := rss.At(i)
		id := collector.IdentityFromResource(rs.Resource())
		sss := rs.ScopeSpans()
		for j := range sss.Len() {
			spans := sss.At(j).Spans()
			for k := range spans.Len() {
				g.consumeSpan(id, spans.At(k), now)
			}
		}
	}
	return nil
}

func spanKind(k ptrace.SpanKind) string {
	switch k {
	case ptrace.SpanKindServer:
		return semconv.KindServer
	case ptrace.SpanKindClient:
		return semconv.KindClient
	case ptrace.SpanKindProducer:
		return "SPAN_KIND_PRODUCER"
	case ptrace.SpanKindConsumer:
		return "SPAN_KIND_CONSUMER"
	case ptrace.SpanKindInternal:
		return "SPAN_KIND_INTERNAL"
	}
	return "SPAN_KIND_UNSPECIFIED"
}

func statusCode(c ptrace.StatusCode) string {
	switch c {
	case ptrace.StatusCodeError:
		return semconv.StatusError
	case ptrace.StatusCodeOk:
		return "STATUS_CODE_OK"
	}
	return "STATUS_CODE_UNSET"
}

func (g *Generator) consumeSpan(id collector.Identity, span ptrace.Span, now time.Time) {
	g.spans.Inc()
	kind, status := spanKind(span.Kind()), statusCode(span.Status().Code())
	dur := 0.0
	if span.EndTimestamp() > span.StartTimestamp() {
		dur = float64(span.EndTimestamp()-span.StartTimestamp()) / 1e9
	}
	name := span.Name()
	s := g.lookup(id, name, kind, status, span)
	if s == nil {
		g.overflow.Inc()
		s = g.lookup(id, overflowSpanName, kind, status, span)
		if s == nil { // even the overflow series did not fit: already counted
			return
		}
	}
	s.calls++
	s.hist.Observe(dur)
	s.updated = now
	s.ex = exemplarSpan{set: true, trace: span.TraceID(), span: span.SpanID(), value: dur, ts: now.UnixMilli()}

	if span.Status().Code() == ptrace.StatusCodeError {
		g.errors.Add(evidence.Key{Service: id.Service, Version: id.Version}, now, errorSpan(span, kind, dur))
	}
	g.pair(id, span, now)
}

// lookup finds or creates the series of a span; nil when max_series is
// reached (the overflow series of a service is always allowed one slot
// past the limit per kind and status).
func (g *Generator) lookup(id collector.Identity, name, kind, status string, span ptrace.Span) *series {
	k := g.key[:0]
	for _, v := range []string{id.Service, id.Namespace, id.Environment, id.Version, name, kind, status} {
		k = append(k, v...)
		k = append(k, 0xff)
	}
	attrs := span.Attributes()
	for _, d := range g.cfg.Dimensions {
		if v, ok := attrs.Get(d); ok {
			k = append(k, collector.ValueString(v)...)
		}
		k = append(k, 0xff)
	}
	g.key = k
	if s, ok := g.series[string(k)]; ok {
		return s
	}
	if len(g.series) >= g.cfg.MaxSeries && name != overflowSpanName {
		return nil
	}
	if len(g.series) >= g.cfg.MaxSeries+g.cfg.MaxSeries/10+1 {
		return nil
	}
	b := labels.NewScratchBuilder(12)
	add := func(n, v string) {
		if v != "" {
			b.Add(n, v)
		}
	}
	add(semconv.LabelService, id.Service)
	add(semconv.LabelNamespace, id.Namespace)
	add(semconv.LabelEnvironment, id.Environment)
	add(semconv.LabelVersion, id.Version)
	add(semconv.LabelSpanName, name)
	add(semconv.LabelSpanKind, kind)
	add(semconv.LabelStatusCode, status)
	for _, d := range g.cfg.Dimensions {
		if v, ok := attrs.Get(d); ok && name != overflowSpanName {
			add(semconv.DimensionLabel(d), collector.ValueString(v))
		}
	}
	b.Sort()
	opts := prometheus.HistogramOpts{Name: "span_duration", Help: "span duration", Buckets: g.cfg.Buckets}
	if len(opts.Buckets) == 0 {
		opts.Buckets = []float64{math.Inf(1)}
	}
	if g.cfg.NativeHistograms {
		opts.NativeHistogramBucketFactor = 1.1
		opts.NativeHistogramMaxBucketNumber = 160
		opts.NativeHistogramMinResetDuration = 0
	}
	s := &series{ls: b.Labels(), hist: prometheus.NewHistogram(opts)}
	g.series[string(k)] = s
	return s
}

func errorSpan(span ptrace.Span, kind string, dur float64) ErrorSpan {
	e := ErrorSpan{
		TraceID: span.TraceID().String(), SpanID: span.SpanID().String(), SpanName: span.Name(),
		Root: span.ParentSpanID().IsEmpty(), Kind: kind, DurationMs: dur * 1000,
		StatusMessage: span.Status().Message(),
	}
	attrs := span.Attributes()
	for _, a := range evidenceAttributes {
		if v, ok := attrs.Get(a); ok {
			if e.Attributes == nil {
				e.Attributes = map[string]string{}
			}
			e.Attributes[a] = collector.ValueString(v)
		}
	}
	events := span.Events()
	for i := range events.Len() {
		ev := events.At(i)
		if ev.Name() != "exception" {
			continue
		}
		typ, _ := ev.Attributes().Get("exception.type")
		msg, _ := ev.Attributes().Get("exception.message")
		e.Exception = strings.TrimSpace(collector.ValueString(typ) + ": " + collector.ValueString(msg))
		break
	}
	return e
}

// pair matches a client (or producer) span with the server (or consumer)
// span that is its child, in either arrival order, and counts the edge.
func (g *Generator) pair(id collector.Identity, span ptrace.Span, now time.Time) {
	var (
		client bool
		key    pendingKey
	)
	switch span.Kind() {
	case ptrace.SpanKindClient, ptrace.SpanKindProducer:
		client, key = true, pendingKey{span.TraceID(), span.SpanID()}
	case ptrace.SpanKindServer, ptrace.SpanKindConsumer:
		if span.ParentSpanID().IsEmpty() {
			return // a root server span has no client to pair with
		}
		key = pendingKey{span.TraceID(), span.ParentSpanID()}
	default:
		return
	}
	failed := span.Status().Code() == ptrace.StatusCodeError
	other, ok := g.pending[key]
	if ok && other.client != client {
		delete(g.pending, key)
		cli, srv := other.id, id
		if client {
			cli, srv = id, other.id
		}
		g.countEdge(cli, srv, failed || other.failed, now)
		return
	}
	if len(g.pending) >= g.cfg.ServiceGraph.MaxPending {
		g.unpaired.WithLabelValues("full").Inc()
		return
	}
	g.pending[key] = pendingSpan{id: id, failed: failed, client: client, arrived: now}
}

func (g *Generator) countEdge(cli, srv collector.Identity, failed bool, now time.Time) {
	key := []byte(cli.Service + "\xff" + cli.Version + "\xff" + srv.Service + "\xff" + srv.Version)
	mk := func() labels.Labels {
		b := labels.NewBuilder(labels.EmptyLabels())
		b.Set(semconv.LabelClient, cli.Service)
		b.Set(semconv.LabelServer, srv.Service)
		if cli.Version != "" {
			b.Set(semconv.LabelClientVersion, cli.Version)
		}
		if srv.Version != "" {
			b.Set(semconv.LabelServerVersion, srv.Version)
		}
		return b.Labels()
	}
	g.edges.Add(key, mk, 1, now)
	if failed {
		g.failed.Add(key, mk, 1, now)
	} else {
		g.failed.Add(key, mk, 0, now) // keep the failure series alive at its count
	}
}

// Run flushes on the configured interval until ctx is done, then flushes once more.
func (g *Generator) Run(ctx context.Context) {
	t := time.NewTicker(time.Duration(g.cfg.FlushInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			g.Flush(g.now())
			return
		case <-t.C:
			g.Flush(g.now())
		}
	}
}

type sample struct {
	ls  labels.Labels
	v   float64
	h   *histogram.Histogram
	exs []exemplar.Exemplar
	// start marks the 0 written just before a series' first value.
	start bool
}

// Flush writes every live series at time at, and staleness markers for
// series that expired.
func (g *Generator) Flush(at time.Time) {
	start := time.Now()
	out := g.collect(at)
	for _, s := range g.edges.Collect(at) {
		out = append(out, sample{ls: s.Labels, v: s.Value, start: !s.At.IsZero()})
	}
	for _, s := range g.failed.Collect(at) {
		out = append(out, sample{ls: s.Labels, v: s.Value, start: !s.At.IsZero()})
	}
	if len(out) == 0 {
		return
	}
	app := g.out.AppenderV2(context.Background())
	t := at.UnixMilli()
	for _, s := range out {
		ts := t
		if s.start {
			ts = at.Add(-derived.StartOffset).UnixMilli()
		}
		if _, err := app.Append(0, s.ls, 0, ts, s.v, s.h, nil, storage.AOptions{Exemplars: s.exs}); err != nil && !collector.IsPartial(err) {
			g.logger.Debug("Span metric sample refused", "series", s.ls.String(), "err", err)
		}
	}
	if err := app.Commit(); err != nil {
		g.flushErrs.Inc()
		g.logger.Error("Writing span metrics failed", "err", err)
		return
	}
	g.flushed.Add(float64(len(out)))
	g.flushTimer.Observe(time.Since(start).Seconds())
}

func (g *Generator) collect(at time.Time) []sample {
	g.mu.Lock()
	defer g.mu.Unlock()
	wait := time.Duration(g.cfg.ServiceGraph.Wait)
	for k, p := range g.pending {
		if at.Sub(p.arrived) > wait {
			delete(g.pending, k)
			g.unpaired.WithLabelValues("expired").Inc()
		}
	}
	exp := time.Duration(g.cfg.Expiration)
	stale := math.Float64frombits(value.StaleNaN)
	var out []sample
	for k, s := range g.series {
		calls := labels.NewBuilder(s.ls).Set(model.MetricNameLabel, semconv.SpanCalls).Labels()
		native := labels.NewBuilder(s.ls).Set(model.MetricNameLabel, semconv.SpanDuration).Labels()
		if at.Sub(s.updated) > exp {
			delete(g.series, k)
			if !s.written {
				continue
			}
			out = append(out, sample{ls: calls, v: stale})
			if g.cfg.NativeHistograms {
				out = append(out, sample{ls: native, h: &histogram.Histogram{Sum: stale}})
			}
			for _, ls := range g.classicSeries(s.ls) {
				out = append(out, sample{ls: ls, v: stale})
			}
			continue
		}
		m := &dto.Metric{}
		if err := s.hist.Write(m); err != nil {
			continue
		}
		h := m.GetHistogram()
		if !s.written {
			// A series this process writes for the first time starts from 0
			// just before (see derived.Counters.Collect).
			out = append(out, sample{ls: calls, start: true})
			if g.cfg.NativeHistograms {
				nh := toNative(h)
				out = append(out, sample{ls: native, h: &histogram.Histogram{Schema: nh.Schema, ZeroThreshold: nh.ZeroThreshold, CounterResetHint: histogram.CounterReset}, start: true})
			}
			for _, ls := range g.classicSeries(s.ls) {
				out = append(out, sample{ls: ls, start: true})
			}
		}
		s.written = true
		var exs []exemplar.Exemplar
		ex := s.ex.exemplar()
		if ex != nil {
			exs = []exemplar.Exemplar{*ex}
		}
		out = append(out, sample{ls: calls, v: s.calls, exs: exs})
		if g.cfg.NativeHistograms {
			out = append(out, sample{ls: native, h: toNative(h), exs: exs})
		}
		if len(g.cfg.Buckets) > 0 {
			out = append(out, g.classic(s.ls, h, ex)...)
		}
		// An exemplar is written once; the next flush carries a newer one or none.
		s.ex = exemplarSpan{}
	}
	return out
}

func (g *Generator) classicSeries(ls labels.Labels) []labels.Labels {
	if len(g.cfg.Buckets) == 0 {
		return nil
	}
	var out []labels.Labels
	for _, b := range append(slices.Clone(g.cfg.Buckets), math.Inf(1)) {
		out = append(out, labels.NewBuilder(ls).Set(model.MetricNameLabel, semconv.SpanDuration+"_bucket").Set("le", formatLe(b)).Labels())
	}
	return append(out,
		labels.NewBuilder(ls).Set(model.MetricNameLabel, semconv.SpanDuration+"_sum").Labels(),
		labels.NewBuilder(ls).Set(model.MetricNameLabel, semconv.SpanDuration+"_count").Labels())
}

// classic writes the histogram as classic _bucket/_sum/_count series; the
// exemplar goes on the bucket its value falls in.
func (g *Generator) classic(ls labels.Labels, h *dto.Histogram, ex *exemplar.Exemplar) []sample {
	var out []sample
	exPlaced := false
	for _, b := range h.GetBucket() {
		s := sample{
			ls: labels.NewBuilder(ls).Set(model.MetricNameLabel, semconv.SpanDuration+"_bucket").Set("le", formatLe(b.GetUpperBound())).Labels(),
			v:  float64(b.GetCumulativeCount()),
		}
		if ex != nil && !exPlaced && ex.Value <= b.GetUpperBound() {
			s.exs, exPlaced = []exemplar.Exemplar{*ex}, true
		}
		out = append(out, s)
	}
	inf := sample{ls: labels.NewBuilder(ls).Set(model.MetricNameLabel, semconv.SpanDuration+"_bucket").Set("le", "+Inf").Labels(), v: float64(h.GetSampleCount())}
	if ex != nil && !exPlaced {
		inf.exs = []exemplar.Exemplar{*ex}
	}
	return append(out, inf,
		sample{ls: labels.NewBuilder(ls).Set(model.MetricNameLabel, semconv.SpanDuration+"_sum").Labels(), v: h.GetSampleSum()},
		sample{ls: labels.NewBuilder(ls).Set(model.MetricNameLabel, semconv.SpanDuration+"_count").Labels(), v: float64(h.GetSampleCount())},
	)
}

// formatLe formats a bucket bound as Prometheus client libraries do.
func formatLe(f float64) string {
	if math.IsInf(f, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// toNative converts client_golang's native histogram to the TSDB's.
func toNative(d *dto.Histogram) *histogram.Histogram {
	spans := func(in []*dto.BucketSpan) []histogram.Span {
		out := make([]histogram.Span, 0, len(in))
		for _, s := range in {
			out = append(out, histogram.Span{Offset: s.GetOffset(), Length: s.GetLength()})
		}
		return out
	}
	return &histogram.Histogram{
		Schema:          d.GetSchema(),
		ZeroThreshold:   d.GetZeroThreshold(),
		ZeroCount:       d.GetZeroCount(),
		Count:           d.GetSampleCount(),
		Sum:             d.GetSampleSum(),
		PositiveSpans:   spans(d.GetPositiveSpan()),
		PositiveBuckets: slices.Clone(d.GetPositiveDelta()),
		NegativeSpans:   spans(d.GetNegativeSpan()),
		NegativeBuckets: slices.Clone(d.GetNegativeDelta()),
	}
}
