// Package loki receives the Loki push API (POST /loki/api/v1/push), so
// Promtail, Grafana Alloy, Fluent Bit and anything else that ships to Loki
// can ship to Vigil: protobuf (snappy) or JSON (optionally gzip). Each line
// is counted into log_records_total by service, version and severity (and
// the log_metrics dimensions, from stream labels or structured metadata), and
// error lines are kept as evidence; lines are not stored (forward them to
// Loki for that).
package loki

import (
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"regexp"

	"github.com/alecthomas/units"
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
	MaxRequestBytes      units.Base2Bytes `yaml:"max_request_bytes"`
	MaxDecompressedBytes units.Base2Bytes `yaml:"max_decompressed_bytes"`
}

// DefaultConfig is the default Loki receiver configuration.
func DefaultConfig() Config {
	return Config{MaxRequestBytes: collector.DefaultMaxRequestBytes, MaxDecompressedBytes: collector.DefaultMaxDecompressedBytes}
}

// Validate reports a limit that cannot work.
func (c Config) Validate() error {
	if c.MaxRequestBytes <= 0 || c.MaxDecompressedBytes <= 0 {
		return errors.New("max_request_bytes and max_decompressed_bytes must be positive")
	}
	return nil
}

// Observer takes each log record.
type Observer interface {
	Observe(r logmetrics.Record)
}

// Receiver is the Loki push endpoint.
type Receiver struct {
	cfg     Config
	obs     Observer
	metrics *collector.Metrics
	logger  *slog.Logger
	handler http.Handler
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
	r := &Receiver{cfg: cfg, obs: obs, metrics: metrics, logger: logger}
	curried := prometheus.Labels{"receiver": ReceiverName}
	var h http.Handler = http.HandlerFunc(r.push)
	h = promhttp.InstrumentHandlerCounter(metrics.Requests.MustCurryWith(curried), h)
	h = promhttp.InstrumentHandlerDuration(metrics.RequestDuration.MustCurryWith(curried), h)
	r.handler = promhttp.InstrumentHandlerInFlight(metrics.InFlight.WithLabelValues(ReceiverName), h)
	return r, nil
}

// ServeHTTP handles POST /loki/api/v1/push.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) { r.handler.ServeHTTP(w, req) }

func (r *Receiver) push(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "the Loki push API takes POST", http.StatusMethodNotAllowed)
		return
	}
	streams, err := r.decode(req)
	if err != nil {
		code := collector.StatusCode(err)
		r.logger.Debug("Rejected Loki push", "code", code, "err", err)
		http.Error(w, err.Error(), code)
		return
	}
	n := 0
	for _, s := range streams {
		id := collector.IdentityFromLabels(s.Labels.Get)
		streamLevel := levelFromLabels(s.Labels.Get)
		for _, e := range s.Entries {
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
	w.WriteHeader(http.StatusNoContent)
}

func (r *Receiver) decode(req *http.Request) ([]Stream, error) {
	ct, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil && req.Header.Get("Content-Type") != "" {
		return nil, collector.Errorf(http.StatusUnsupportedMediaType, "bad Content-Type %q: %v", req.Header.Get("Content-Type"), err)
	}
	wire := collector.GetBuffer()
	defer collector.PutBuffer(wire)
	if err := collector.ReadBody(req, int64(r.cfg.MaxRequestBytes), wire); err != nil {
		return nil, err
	}
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
