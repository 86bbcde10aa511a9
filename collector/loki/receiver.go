// Package loki receives the Loki push API (POST /loki/api/v1/push), so
// Promtail, Grafana Alloy, Fluent Bit and anything else that ships to Loki
// can ship to Vigil: protobuf (snappy) or JSON (optionally gzip). Each line
// is counted into log_records_total by service, version and severity (and
// the log_metrics dimensions, from stream labels or structured metadata), and
// error lines are kept as evidence; lines are not stored (forward them to
// Loki for that).
//
// Entries are validated as Loki's distributor validates them, with its
// wording: timestamps older than ingest.max_sample_age or further ahead
// than ingest.max_sample_future, stream labels over the ingest label
// limits, and lines or labels that are not valid UTF-8 are refused with
// 400 while the valid entries of the same push are kept.
package loki

import (
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/vigilhq/vigil/collector"
	"github.com/vigilhq/vigil/collector/logmetrics"
	"github.com/vigilhq/vigil/internal/semconv"
)

// ReceiverName is the "receiver" label of the Loki ingest metrics.
const ReceiverName = "loki"

// Config bounds push requests.
type Config struct {
	collector.BodyLimits `yaml:",inline"`
}

// DefaultConfig is the default Loki receiver configuration.
func DefaultConfig() Config {
	return Config{BodyLimits: collector.DefaultBodyLimits()}
}

// Validate reports a limit that cannot work.
func (c Config) Validate() error { return c.BodyLimits.Validate() }

// Observer takes each log record.
type Observer interface {
	Observe(r logmetrics.Record)
}

// Receiver is the Loki push endpoint.
type Receiver struct {
	cfg     Config
	obs     Observer
	limits  collector.IngestLimits
	limiter *collector.Limiter // nil: no admission limit
	metrics *collector.Metrics
	logger  *slog.Logger
	handler http.Handler
	now     func() time.Time
}

// New builds the receiver.
func New(cfg Config, obs Observer, metrics *collector.Metrics, logger *slog.Logger) (*Receiver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("loki receiver: %w", err)
	}
	if obs == nil || metrics == nil {
		return nil, errors.New("loki receiver: observer and metrics are required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Receiver{cfg: cfg, obs: obs, limits: collector.DefaultIngestLimits(), metrics: metrics, logger: logger, now: time.Now}
	curried := prometheus.Labels{"receiver": ReceiverName}
	var h http.Handler = http.HandlerFunc(r.push)
	h = promhttp.InstrumentHandlerCounter(metrics.Requests.MustCurryWith(curried), h)
	h = promhttp.InstrumentHandlerDuration(metrics.RequestDuration.MustCurryWith(curried), h)
	r.handler = promhttp.InstrumentHandlerInFlight(metrics.InFlight.WithLabelValues(ReceiverName), h)
	return r, nil
}

// SetLimiter makes the receiver take a processing slot from l once it has
// read a push's body (call before serving).
func (r *Receiver) SetLimiter(l *collector.Limiter) {
	r.limiter = l
	l.Register(ReceiverName)
}

// SetLimits sets the ingest limits entries are validated against (those
// of the hot path, which every receiver shares; the defaults otherwise).
func (r *Receiver) SetLimits(l collector.IngestLimits) { r.limits = l }

// ServeHTTP handles POST /loki/api/v1/push.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) { r.handler.ServeHTTP(w, req) }

func (r *Receiver) push(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "the Loki push API takes POST", http.StatusMethodNotAllowed)
		return
	}
	streams, release, err := r.decode(w, req)
	if err != nil {
		r.metrics.Refused(w, ReceiverName, err)
		code := collector.StatusCode(err)
		r.logger.Debug("Rejected Loki push", "code", code, "err", err)
		http.Error(w, err.Error(), code)
		return
	}
	defer release()
	var rejected collector.Rejections
	minT, maxT := r.limits.Window(r.now())
	n := 0
	for _, s := range streams {
		if reason, msg := r.validateStream(s); reason != "" {
			rejected.Add(reason, len(s.Entries), func() string { return msg })
			continue
		}
		id := collector.IdentityFromLabels(s.Labels.Get)
		streamLevel := levelFromLabels(s.Labels.Get)
		for _, e := range s.Entries {
			if reason, msg := validateEntry(s, e, minT, maxT); reason != "" {
				rejected.Add(reason, 1, msg)
				continue
			}
			rec := logmetrics.Record{Identity: id, Time: e.Time, Body: e.Line}
			rec.Severity = streamLevel
			if rec.Severity == "" && e.Metadata != nil {
				rec.Severity = levelFromLabels(func(k string) string { return e.Metadata[k] })
			}
			if rec.Severity == "" {
				rec.Severity = levelFromLine(e.Line)
			}
			if e.Metadata != nil {
				rec.TraceID = firstOf(e.Metadata, "trace_id", "traceID", "traceId")
				rec.SpanID = firstOf(e.Metadata, "span_id", "spanID", "spanId")
			}
			rec.Lookup = dimensionLookup(s.Labels, e.Metadata)
			r.obs.Observe(rec)
			n++
		}
	}
	r.metrics.Samples.WithLabelValues(ReceiverName, "log_record").Add(float64(n))
	rejected.Count(r.metrics, ReceiverName)
	if err := rejected.Err(n, "entries"); err != nil {
		r.logger.Debug("Rejected Loki entries", "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// validateStream checks a stream's labels as Loki does, with Loki's
// messages, and names the reason to refuse all its entries.
func (r *Receiver) validateStream(s Stream) (reason, msg string) {
	err := r.limits.CheckLabels(s.Labels)
	var le *collector.LabelLimitError
	if errors.As(err, &le) {
		switch le.Err {
		case collector.ErrMaxLabelNames:
			return collector.ReasonMaxLabelNames, fmt.Sprintf("entry for stream '%s' has %d label names; limit %d", s.Labels, le.Count, le.Limit)
		case collector.ErrLabelNameTooLong:
			return collector.ReasonLabelNameTooLong, fmt.Sprintf("stream '%s' has label name too long: '%s'", s.Labels, le.Name)
		default:
			return collector.ReasonLabelValueTooLong, fmt.Sprintf("stream '%s' has label value too long: '%s'", s.Labels, le.Value)
		}
	}
	bad := ""
	s.Labels.Range(func(l labels.Label) {
		if bad == "" && (!utf8.ValidString(l.Name) || !utf8.ValidString(l.Value)) {
			bad = l.Name
		}
	})
	if bad != "" {
		return collector.ReasonInvalidLabels, fmt.Sprintf("stream '%s' has label %q that is not valid UTF-8", s.Labels, bad)
	}
	return "", ""
}

// validateEntry checks an entry's timestamp and line as Loki does, with
// Loki's messages.
func validateEntry(s Stream, e Entry, minT, maxT int64) (reason string, msg func() string) {
	switch t := e.Time.UnixMilli(); {
	case t < minT:
		return collector.ReasonTooOld, func() string {
			return fmt.Sprintf("entry for stream '%s' has timestamp too old: %s, oldest acceptable timestamp is: %s",
				s.Labels, e.Time.UTC().Format(time.RFC3339), time.UnixMilli(minT).UTC().Format(time.RFC3339))
		}
	case t > maxT:
		return collector.ReasonFuture, func() string {
			return fmt.Sprintf("entry for stream '%s' has timestamp too new: %s", s.Labels, e.Time.UTC().Format(time.RFC3339))
		}
	case !utf8.ValidString(e.Line):
		return collector.ReasonInvalidUTF8, func() string {
			return fmt.Sprintf("entry for stream '%s' has a line that is not valid UTF-8: %q", s.Labels, clip(e.Line))
		}
	}
	return "", nil
}

func clip(s string) string {
	if len(s) > 100 {
		return s[:100]
	}
	return s
}

// decode reads the push's body, takes a processing slot, and decodes the
// body; release frees the slot once the entries are processed.
func (r *Receiver) decode(w http.ResponseWriter, req *http.Request) (streams []Stream, release func(), err error) {
	ct, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil && req.Header.Get("Content-Type") != "" {
		return nil, nil, collector.Errorf(http.StatusUnsupportedMediaType, "bad Content-Type %q: %v", req.Header.Get("Content-Type"), err)
	}
	wire := collector.GetBuffer()
	defer collector.PutBuffer(wire)
	release, err = r.limiter.ReadAndAdmit(w, req, ReceiverName, int64(r.cfg.MaxRequestBytes), wire)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	streams, err = r.decodeBody(req, ct, wire)
	return streams, release, err
}

func (r *Receiver) decodeBody(req *http.Request, ct string, wire *collector.Buffer) ([]Stream, error) {
	r.metrics.ReceivedBytes.WithLabelValues(ReceiverName, "wire").Add(float64(len(wire.B)))
	plain := collector.GetBuffer()
	defer collector.PutBuffer(plain)
	enc := req.Header.Get("Content-Encoding")
	switch ct {
	case "application/json":
		body := wire.B
		switch enc {
		case "", "identity":
		case "gzip":
			if err := collector.DecodeGzip(plain, wire.B, int64(r.cfg.MaxDecompressedBytes)); err != nil {
				return nil, err
			}
			body = plain.B
		default:
			return nil, collector.Errorf(http.StatusUnsupportedMediaType, "unsupported Content-Encoding %q for JSON: use gzip or none", enc)
		}
		if err := collector.CheckJSONDepth(body, collector.MaxLokiJSONDepth); err != nil {
			return nil, &collector.StatusError{Code: http.StatusBadRequest, Reason: collector.RefusedTooDeep, Err: fmt.Errorf("refused before decoding: %w", err)}
		}
		streams, err := DecodeJSON(body)
		if err != nil {
			return nil, collector.Errorf(http.StatusBadRequest, "decode Loki JSON push: %v", err)
		}
		return streams, nil
	case "", "application/x-protobuf", "application/protobuf":
		if enc != "" && enc != "snappy" {
			return nil, collector.Errorf(http.StatusUnsupportedMediaType, "unsupported Content-Encoding %q for protobuf: the body is snappy-compressed", enc)
		}
		if err := collector.DecodeSnappy(plain, wire.B, int64(r.cfg.MaxDecompressedBytes)); err != nil {
			return nil, err
		}
		r.metrics.ReceivedBytes.WithLabelValues(ReceiverName, "decompressed").Add(float64(len(plain.B)))
		streams, err := DecodeProto(plain.B)
		if err != nil {
			return nil, collector.Errorf(http.StatusBadRequest, "decode Loki protobuf push: %v", err)
		}
		return streams, nil
	}
	return nil, collector.Errorf(http.StatusUnsupportedMediaType, "unsupported Content-Type %q: use application/x-protobuf (snappy) or application/json", ct)
}

// levelFromLabels reads a level from the labels Loki clients commonly set.
func levelFromLabels(get func(string) string) string {
	for _, k := range []string{"level", "severity", "detected_level", "lvl", "loglevel", "severity_text"} {
		if v := get(k); v != "" {
			if s := logmetrics.SeverityFromText(v); s != semconv.SeverityUnknown {
				return s
			}
		}
	}
	return ""
}

var (
	logfmtLevel = regexp.MustCompile(`(?i)(?:^|\s)(?:level|lvl|severity)=["']?([a-z]+)`)
	jsonLevel   = regexp.MustCompile(`(?i)"(?:level|lvl|severity|log\.level)"\s*:\s*"([a-z]+)"`)
	prefixLevel = regexp.MustCompile(`^(?:\S+\s+){0,2}\[?(TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL|CRITICAL|PANIC)\]?[\s:]`)
)

// levelFromLine detects the level of a line: logfmt (level=error), JSON
// ("level":"error"), or a leading level word (ERROR ..., [WARN] ...).
func levelFromLine(line string) string {
	if len(line) > 4096 {
		line = line[:4096]
	}
	for _, re := range []*regexp.Regexp{logfmtLevel, jsonLevel, prefixLevel} {
		if m := re.FindStringSubmatch(line); m != nil {
			if s := logmetrics.SeverityFromText(m[1]); s != semconv.SeverityUnknown {
				return s
			}
		}
	}
	return semconv.SeverityUnknown
}

// dimensionLookup finds a log_metrics dimension in the stream's labels,
// then in the entry's structured metadata, by its attribute name or its
// label name (k8s.cluster.name or k8s_cluster_name).
func dimensionLookup(ls labels.Labels, md map[string]string) func(string) (string, bool) {
	return func(attr string) (string, bool) {
		names := []string{attr, semconv.DimensionLabel(attr)}
		for _, n := range names {
			if v := ls.Get(n); v != "" {
				return v, true
			}
		}
		for _, n := range names {
			if v, ok := md[n]; ok && v != "" {
				return v, true
			}
		}
		return "", false
	}
}

func firstOf(m map[string]string, keys ...string) string {
	for _, k := range keys {
		if v := m[k]; v != "" {
			return v
		}
	}
	return ""
}
