// Package remotewrite receives Prometheus remote_write 1.0 and 2.0 requests
// and appends them to storage. A request is acknowledged (2xx) only after
// its samples are committed to the WAL; samples storage refuses
// (out-of-order, duplicate, too old, bad labels) are answered with 400 and a
// message naming the problem, as Prometheus answers them, while every valid
// sample of the same request is kept.
package remotewrite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/collector"
)

// ReceiverName is the "receiver" label of this receiver's ingest metrics.
const ReceiverName = "remote_write"

// Config bounds what one request may carry. The limits on what it holds
// (labels, timestamps) are the hot path's, shared by every receiver.
type Config struct {
	collector.BodyLimits `yaml:",inline"`
}

// DefaultConfig is the configuration used when nothing is set.
func DefaultConfig() Config {
	return Config{BodyLimits: collector.DefaultBodyLimits()}
}

// Validate reports a limit that cannot work.
func (c Config) Validate() error { return c.BodyLimits.Validate() }

// Storage is where the receiver writes: the hot path, which appends
// through the ingest limits and remembers series references. Its
// appenders must also implement storage.ExemplarAppenderV2 for exemplars
// to be kept.
type Storage interface {
	storage.AppendableV2
	SeriesCache
}

// Receiver is the remote_write endpoint.
type Receiver struct {
	cfg     Config
	app     Storage
	md      collector.MetadataSink
	limiter *collector.Limiter // nil: no admission limit
	metrics *collector.Metrics
	logger  *slog.Logger
	handler http.Handler
}

// New builds a receiver writing to app. md may be nil to drop metadata.
func New(cfg Config, app Storage, md collector.MetadataSink, metrics *collector.Metrics, logger *slog.Logger) (*Receiver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("remote_write receiver: %w", err)
	}
	if app == nil || metrics == nil {
		return nil, errors.New("remote_write receiver: storage and metrics are required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	rcv := &Receiver{cfg: cfg, app: app, md: md, metrics: metrics, logger: logger}
	h := remoteapi.NewWriteHandler(rcv,
		remoteapi.MessageTypes{remoteapi.WriteV1MessageType, remoteapi.WriteV2MessageType},
		remoteapi.WithWriteHandlerLogger(logger),
		remoteapi.WithWriteHandlerMiddlewares(rcv.readBody),
	)
	curried := prometheus.Labels{"receiver": ReceiverName}
	h = promhttp.InstrumentHandlerCounter(metrics.Requests.MustCurryWith(curried), h)
	h = promhttp.InstrumentHandlerDuration(metrics.RequestDuration.MustCurryWith(curried), h)
	h = promhttp.InstrumentHandlerInFlight(metrics.InFlight.WithLabelValues(ReceiverName), h)
	rcv.handler = h
	return rcv, nil
}

// SetLimiter makes the receiver take a processing slot from l once it has
// read a request's body (call before serving).
func (rcv *Receiver) SetLimiter(l *collector.Limiter) {
	rcv.limiter = l
	l.Register(ReceiverName)
}

// ServeHTTP handles POST /api/v1/write.
func (rcv *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rcv.handler.ServeHTTP(w, r)
}

type bodyKey struct{}

// readBody reads the body within the configured limits, takes a
// processing slot, decompresses the body and hands the decompressed bytes
// to Store through the request context, so the payload is not copied
// again.
func (rcv *Receiver) readBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if enc := r.Header.Get("Content-Encoding"); enc != "" && enc != string(remoteapi.SnappyBlockCompression) {
			http.Error(w, fmt.Sprintf("%s encoding (compression) is not accepted by this server; only %s is acceptable", enc, remoteapi.SnappyBlockCompression), http.StatusUnsupportedMediaType)
			return
		}
		wire, plain := collector.GetBuffer(), collector.GetBuffer()
		defer collector.PutBuffer(wire)
		defer collector.PutBuffer(plain)
		release, err := rcv.limiter.ReadAndAdmit(w, r, ReceiverName, int64(rcv.cfg.MaxRequestBytes), wire)
		if err != nil {
			rcv.reject(w, err)
			return
		}
		defer release()
		if err := collector.DecodeSnappy(plain, wire.B, int64(rcv.cfg.MaxDecompressedBytes)); err != nil {
			rcv.reject(w, err)
			return
		}
		rcv.metrics.ReceivedBytes.WithLabelValues(ReceiverName, "wire").Add(float64(len(wire.B)))
		rcv.metrics.ReceivedBytes.WithLabelValues(ReceiverName, "decompressed").Add(float64(len(plain.B)))
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), bodyKey{}, plain.B)))
	})
}

func (rcv *Receiver) reject(w http.ResponseWriter, err error) {
	rcv.metrics.Refused(w, ReceiverName, err)
	code := collector.StatusCode(err)
	rcv.logger.Debug("Rejected remote write request", "code", code, "err", err)
	http.Error(w, err.Error(), code)
}

var requestPool = sync.Pool{New: func() any { return new(Request) }}

// Store implements the client_golang remote write handler's storage: it
// decodes the message type the handler negotiated and appends it.
func (rcv *Receiver) Store(r *http.Request, msgType remoteapi.WriteMessageType) (*remoteapi.WriteResponse, error) {
	resp := remoteapi.NewWriteResponse()
	body, _ := r.Context().Value(bodyKey{}).([]byte)
	req := requestPool.Get().(*Request)
	defer func() {
		req.Reset()
		requestPool.Put(req)
	}()

	v2 := msgType == remoteapi.WriteV2MessageType
	var err error
	if v2 {
		err = DecodeV2(body, req)
	} else {
		err = DecodeV1(body, req)
	}
	if err != nil {
		resp.SetStatusCode(http.StatusBadRequest)
		return resp, fmt.Errorf("decode remote write %s request: %w", protocolVersion(v2), err)
	}
	stats, err := rcv.Write(r.Context(), req)
	resp.Samples, resp.Histograms, resp.Exemplars = stats.Samples, stats.Histograms, stats.Exemplars
	if err != nil {
		resp.SetStatusCode(collector.StatusCode(err))
		if resp.Stats().NoDataWritten() || collector.StatusCode(err) >= 500 {
			rcv.logger.Warn("Remote write request failed", "protocol", protocolVersion(v2), "err", err)
		}
		return resp, err
	}
	return resp, nil
}

func protocolVersion(v2 bool) string {
	if v2 {
		return "2.0"
	}
	return "1.0"
}

// Stats counts what a request stored.
type Stats struct {
	Samples, Histograms, Exemplars int
}

// SeriesCache remembers the storage reference of series by their wire label
// encoding (the hot path implements it). With it, a series seen before is
// appended by reference without building or validating its labels again.
type SeriesCache interface {
	CachedRef(key []byte) (storage.SeriesRef, bool)
	CacheRef(key []byte, ls labels.Labels, ref storage.SeriesRef)
	ForgetRef(key []byte)
}

// Write appends a decoded request and commits it. It returns a StatusError
// with 400 when part of the request was refused (the rest is committed) and
// with 500 when storage failed (nothing is committed, the sender retries).
func (rcv *Receiver) Write(ctx context.Context, req *Request) (Stats, error) {
	w := writer{
		rcv:   rcv,
		b:     labels.NewScratchBuilder(16),
		app:   rcv.app.AppenderV2(ctx),
		cache: rcv.app,
	}
	w.exApp, _ = w.app.(storage.ExemplarAppenderV2)
	for i := range req.Series {
		if err := w.series(i, &req.Series[i]); err != nil {
			_ = w.app.Rollback()
			return Stats{}, err
		}
	}
	if err := w.app.Commit(); err != nil {
		return Stats{}, collector.Errorf(http.StatusInternalServerError, "commit to storage: %w", err)
	}
	if rcv.md != nil {
		for _, m := range req.Metadata {
			rcv.md.Set(m.Family, m.Metadata)
		}
	}
	rcv.metrics.Samples.WithLabelValues(ReceiverName, "float").Add(float64(w.stats.Samples))
	rcv.metrics.Samples.WithLabelValues(ReceiverName, "histogram").Add(float64(w.stats.Histograms))
	rcv.metrics.Samples.WithLabelValues(ReceiverName, "exemplar").Add(float64(w.stats.Exemplars))
	w.problems.Count(rcv.metrics, ReceiverName)
	return w.stats, w.problems.Err(w.stats.Samples+w.stats.Histograms, "samples")
}

// writer holds the state of one request's appends.
type writer struct {
	rcv      *Receiver
	app      storage.AppenderV2
	exApp    storage.ExemplarAppenderV2
	cache    SeriesCache
	b        labels.ScratchBuilder
	key      []byte
	exs      []exemplar.Exemplar
	stats    Stats
	problems collector.Rejections
}

// seriesState is what the writer knows about the series being appended.
type seriesState struct {
	raw    []Label
	ls     labels.Labels // empty while the series is appended by cached reference
	ref    storage.SeriesRef
	cached bool
}

func (st *seriesState) name() string {
	if !st.ls.IsEmpty() {
		return st.ls.String()
	}
	return "{" + formatLabels(st.raw) + "}"
}

// series appends one series. It returns an error only when storage failed.
func (w *writer) series(i int, s *Series) error {
	n := len(s.Samples) + len(s.Histograms)
	st := seriesState{raw: s.Labels}
	w.key = appendKey(w.key[:0], s.Labels)
	st.ref, st.cached = w.cache.CachedRef(w.key)
	if !st.cached {
		ls, err := buildLabels(&w.b, s.Labels)
		if err != nil {
			w.problems.Add(collector.ReasonInvalidLabels, n, func() string { return fmt.Sprintf("series %d: %v", i, err) })
			return nil
		}
		st.ls = ls
	}
	if n == 0 && len(s.Exemplars) == 0 {
		return nil
	}
	if w.rcv.md != nil && s.Metadata.Type != "" {
		w.rcv.md.Set(metricName(s.Labels), s.Metadata)
	}
	for _, smp := range s.Samples {
		ok, err := w.append(&st, smp.StartTimestamp, smp.Timestamp, smp.Value, Histogram{})
		if err != nil {
			return err
		}
		if ok {
			w.stats.Samples++
		}
	}
	for _, h := range s.Histograms {
		reduceResolution(h)
		ok, err := w.append(&st, h.StartTimestamp, h.Timestamp, 0, h)
		if err != nil {
			return err
		}
		if ok {
			w.stats.Histograms++
		}
	}
	if !st.cached && st.ref != 0 {
		w.cache.CacheRef(w.key, st.ls, st.ref)
	}
	if len(s.Exemplars) > 0 && w.exApp != nil && st.ref != 0 {
		w.exemplars(&st, s.Exemplars)
	}
	return nil
}

// append appends one sample. It reports whether the sample was stored, and
// returns an error only when storage failed.
func (w *writer) append(st *seriesState, start, t int64, v float64, h Histogram) (bool, error) {
	ref, err := w.app.Append(st.ref, st.ls, start, t, v, h.H, h.FH, storage.AOptions{})
	if err != nil && st.cached && collector.ReasonOf(err) == "" {
		// The cached reference is gone from the head (its series went
		// inactive and was dropped): forget it and append by labels.
		w.cache.ForgetRef(w.key)
		st.cached, st.ref = false, 0
		ls, lerr := buildLabels(&w.b, st.raw)
		if lerr != nil {
			w.problems.Add(collector.ReasonInvalidLabels, 1, lerr.Error)
			return false, nil
		}
		st.ls = ls
		ref, err = w.app.Append(0, st.ls, start, t, v, h.H, h.FH, storage.AOptions{})
	}
	if ref != 0 {
		st.ref = ref
	}
	if err == nil || collector.IsPartial(err) {
		return true, nil // stored; at most its exemplars failed
	}
	reason := collector.ReasonOf(err)
	if reason == "" {
		return false, collector.Errorf(http.StatusInternalServerError, "append to storage: %w", err)
	}
	w.problems.Add(reason, 1, func() string { return fmt.Sprintf("%s @%d: %v", st.name(), t, err) })
	return false, nil
}

func (w *writer) exemplars(st *seriesState, in []Exemplar) {
	w.exs = w.exs[:0]
	for _, e := range in {
		el, err := buildExemplarLabels(&w.b, e.Labels)
		if err != nil {
			continue
		}
		w.exs = append(w.exs, exemplar.Exemplar{Labels: el, Value: e.Value, Ts: e.Timestamp, HasTs: true})
	}
	slices.SortFunc(w.exs, exemplar.Compare)
	_, err := w.exApp.AppendExemplars(st.ref, st.ls, w.exs)
	failed := 0
	var pErr *storage.AppendPartialError
	if errors.As(err, &pErr) {
		failed = len(pErr.ExemplarErrors)
	} else if err != nil {
		failed = len(w.exs)
	}
	w.stats.Exemplars += len(w.exs) - failed
}

// appendKey encodes a series' labels as they arrived, for the series cache.
func appendKey(dst []byte, ls []Label) []byte {
	for _, l := range ls {
		dst = append(dst, l.Name...)
		dst = append(dst, 0xff)
		dst = append(dst, l.Value...)
		dst = append(dst, 0xfe)
	}
	return dst
}

func metricName(ls []Label) string {
	for _, l := range ls {
		if l.Name == model.MetricNameLabel {
			return l.Value
		}
	}
	return ""
}

// reduceResolution brings histograms with a schema finer than the TSDB
// supports down to its finest schema, as Prometheus's receiver does.
func reduceResolution(h Histogram) {
	if h.H != nil && histogram.IsExponentialSchemaReserved(h.H.Schema) && h.H.Schema > histogram.ExponentialSchemaMax {
		_ = h.H.ReduceResolution(histogram.ExponentialSchemaMax)
	}
	if h.FH != nil && histogram.IsExponentialSchemaReserved(h.FH.Schema) && h.FH.Schema > histogram.ExponentialSchemaMax {
		_ = h.FH.ReduceResolution(histogram.ExponentialSchemaMax)
	}
}

// buildLabels validates a series' labels and builds the sorted label set
// storage keeps. Labels with an empty value are dropped: in Prometheus an
// empty value is the same as no label.
func buildLabels(b *labels.ScratchBuilder, ls []Label) (labels.Labels, error) {
	if !slices.IsSortedFunc(ls, compareLabelNames) {
		slices.SortFunc(ls, compareLabelNames)
	}
	b.Reset()
	hasName := false
	for i, l := range ls {
		if err := validateLabel(l); err != nil {
			return labels.EmptyLabels(), err
		}
		if i > 0 && ls[i-1].Name == l.Name {
			return labels.EmptyLabels(), fmt.Errorf("%w: duplicate label name %q", collector.ErrInvalidLabels, l.Name)
		}
		if l.Value == "" {
			continue
		}
		if l.Name == model.MetricNameLabel {
			hasName = true
		}
		b.Add(l.Name, l.Value)
	}
	if !hasName {
		return labels.EmptyLabels(), fmt.Errorf("%w: no metric name: the %s label is missing or empty in {%s}", collector.ErrInvalidLabels, model.MetricNameLabel, formatLabels(ls))
	}
	return b.Labels(), nil
}

func buildExemplarLabels(b *labels.ScratchBuilder, ls []Label) (labels.Labels, error) {
	b.Reset()
	for _, l := range ls {
		if err := validateLabel(l); err != nil {
			return labels.EmptyLabels(), err
		}
		if l.Value != "" {
			b.Add(l.Name, l.Value)
		}
	}
	b.Sort()
	return b.Labels(), nil
}

func compareLabelNames(a, b Label) int { return strings.Compare(a.Name, b.Name) }

func validateLabel(l Label) error {
	switch {
	case l.Name == "":
		return fmt.Errorf("%w: empty label name (with value %q)", collector.ErrInvalidLabels, l.Value)
	case !utf8.ValidString(l.Name):
		return fmt.Errorf("%w: label name %q is not valid UTF-8", collector.ErrInvalidLabels, l.Name)
	case !utf8.ValidString(l.Value):
		return fmt.Errorf("%w: label %q has a value that is not valid UTF-8: %q", collector.ErrInvalidLabels, l.Name, l.Value)
	}
	return nil
}

func formatLabels(ls []Label) string {
	var sb strings.Builder
	for i, l := range ls {
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "%s=%q", l.Name, l.Value)
	}
	return sb.String()
}
