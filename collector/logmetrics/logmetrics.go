// Package logmetrics counts log records per service, version and severity
// (log_records_total), and per the configured dimensions, and keeps the most recent error and fatal records of
// each service version as evidence. It takes OTLP logs and Loki pushes;
// the log lines themselves are not stored.
package logmetrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/vigilhq/vigil/collector"
	"github.com/vigilhq/vigil/collector/derived"
	"github.com/vigilhq/vigil/collector/evidence"
	"github.com/vigilhq/vigil/internal/semconv"
)

// Config configures log metrics.
type Config struct {
	// FlushInterval is how often log_records_total is written.
	FlushInterval model.Duration `yaml:"flush_interval"`
	// MaxSeries bounds log_records_total series; records past it are not counted.
	MaxSeries int `yaml:"max_series"`
	// Expiration drops series not updated for this long.
	Expiration model.Duration `yaml:"expiration"`
	// ErrorLogs keeps the recent error records per service version.
	ErrorLogs RingConfig `yaml:"error_logs"`
	// MaxLineLength truncates the lines kept as evidence.
	MaxLineLength int `yaml:"max_line_length"`
	// Dimensions are attributes added as labels to log_records_total (dots
	// become underscores), e.g. k8s.cluster.name or cluster: looked up in
	// the log record's attributes, then its scope's and its resource's
	// (OTLP), or in the stream's labels, then the entry's structured
	// metadata (Loki). A record without the attribute has no such label.
	Dimensions []string `yaml:"dimensions"`
}

// RingConfig bounds the evidence ring.
type RingConfig struct {
	PerService int `yaml:"per_service_version"`
	MaxKeys    int `yaml:"max_service_versions"`
}

// DefaultConfig is the default log metrics configuration.
func DefaultConfig() Config {
	return Config{
		FlushInterval: model.Duration(15 * time.Second),
		MaxSeries:     20000,
		Expiration:    model.Duration(5 * time.Minute),
		ErrorLogs:     RingConfig{PerService: 100, MaxKeys: 1000},
		MaxLineLength: 2048,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.FlushInterval < model.Duration(time.Second):
		return fmt.Errorf("flush_interval must be at least 1s, got %s", c.FlushInterval)
	case c.MaxSeries <= 0:
		return fmt.Errorf("max_series must be positive, got %d", c.MaxSeries)
	case c.Expiration <= c.FlushInterval:
		return fmt.Errorf("expiration (%s) must be longer than flush_interval (%s)", c.Expiration, c.FlushInterval)
	case c.ErrorLogs.PerService <= 0 || c.ErrorLogs.MaxKeys <= 0:
		return errors.New("error_logs: per_service_version and max_service_versions must be positive")
	case c.MaxLineLength <= 0:
		return fmt.Errorf("max_line_length must be positive, got %d", c.MaxLineLength)
	}
	seen := map[string]string{}
	for _, l := range semconv.LogRecordLabels {
		seen[l] = "the label " + l + " Vigil sets itself"
	}
	for _, d := range c.Dimensions {
		if d == "" {
			return errors.New("dimensions: empty attribute name")
		}
		l := semconv.DimensionLabel(d)
		if other, ok := seen[l]; ok {
			return fmt.Errorf("dimensions: %q would be the label %q, which is already %s", d, l, other)
		}
		seen[l] = fmt.Sprintf("dimension %q", d)
	}
	return nil
}

// Labels are the labels a log_records_total series may carry: the fixed
// ones and those of the dimensions.
func (c Config) Labels() []string {
	out := append([]string(nil), semconv.LogRecordLabels...)
	for _, d := range c.Dimensions {
		out = append(out, semconv.DimensionLabel(d))
	}
	return out
}

// Record is one log record, from any source.
type Record struct {
	collector.Identity
	Time       time.Time
	Severity   string // one of the semconv severities
	Body       string
	TraceID    string
	SpanID     string
	Attributes map[string]string
	// Lookup finds the value of a dimension by its attribute name (nil: none).
	Lookup func(attr string) (string, bool)
}

// ErrorLog is an error record kept as evidence.
type ErrorLog struct {
	Time       time.Time         `json:"time"`
	Severity   string            `json:"severity"`
	Body       string            `json:"body"`
	TraceID    string            `json:"traceID,omitempty"`
	SpanID     string            `json:"spanID,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// Generator derives log metrics.
type Generator struct {
	cfg    Config
	out    storage.AppendableV2
	logger *slog.Logger
	now    func() time.Time

	counts *derived.Counters
	errors *evidence.Rings[ErrorLog]
	dims   []string // label names of cfg.Dimensions

	records   prometheus.Counter
	overflow  prometheus.Counter
	flushErrs prometheus.Counter
}

// New builds a generator writing to out.
func New(cfg Config, out storage.AppendableV2, logger *slog.Logger, reg prometheus.Registerer) (*Generator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("log_metrics: %w", err)
	}
	if out == nil {
		return nil, errors.New("log_metrics: storage is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Generator{
		cfg: cfg, out: out, logger: logger, now: time.Now,
		counts: derived.NewCounters(semconv.LogRecords, cfg.MaxSeries, time.Duration(cfg.Expiration)),
		errors: evidence.New[ErrorLog]("error_logs", cfg.ErrorLogs.PerService, cfg.ErrorLogs.MaxKeys, reg),
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_log_metrics_records_total", Help: "Log records counted into log_records_total.",
		}),
		overflow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_log_metrics_dropped_records_total", Help: "Log records not counted because log_records_total holds max_series series.",
		}),
		flushErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_log_metrics_flush_failures_total", Help: "Log metric flushes storage refused.",
		}),
	}
	for _, d := range cfg.Dimensions {
		g.dims = append(g.dims, semconv.DimensionLabel(d))
	}
	if reg != nil {
		reg.MustRegister(g.records, g.overflow, g.flushErrs)
	}
	return g, nil
}

// ErrorLogs are the recent error records per service version.
func (g *Generator) ErrorLogs() *evidence.Rings[ErrorLog] { return g.errors }

// Observe counts one record and keeps it as evidence when it is an error.
func (g *Generator) Observe(r Record) {
	g.records.Inc()
	now := g.now()
	key := []byte(r.Service + "\xff" + r.Namespace + "\xff" + r.Environment + "\xff" + r.Version + "\xff" + r.Severity)
	var dims []string
	if len(g.dims) > 0 {
		dims = make([]string, len(g.dims))
		for i, d := range g.cfg.Dimensions {
			if r.Lookup != nil {
				dims[i], _ = r.Lookup(d)
			}
			key = append(append(key, 0xff), dims[i]...)
		}
	}
	ok := g.counts.Add(key, func() labels.Labels {
		b := labels.NewScratchBuilder(6 + len(dims))
		add := func(name, value string) {
			if value != "" {
				b.Add(name, value)
			}
		}
		add(semconv.LabelService, r.Service)
		add(semconv.LabelNamespace, r.Namespace)
		add(semconv.LabelEnvironment, r.Environment)
		add(semconv.LabelVersion, r.Version)
		add(semconv.LabelSeverity, r.Severity)
		for i, v := range dims {
			add(g.dims[i], v)
		}
		b.Sort()
		return b.Labels()
	}, 1, now)
	if !ok {
		g.overflow.Inc()
	}
	if r.Severity == semconv.SeverityError || r.Severity == semconv.SeverityFatal {
		t := r.Time
		if t.IsZero() {
			t = now
		}
		g.errors.Add(evidence.Key{Service: r.Service, Version: r.Version}, now, ErrorLog{
			Time: t, Severity: r.Severity, Body: truncate(r.Body, g.cfg.MaxLineLength),
			TraceID: r.TraceID, SpanID: r.SpanID, Attributes: r.Attributes,
		})
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) && len(s) > 0 {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// evidenceAttributes are the log attributes kept with an error record.
var evidenceAttributes = []string{"exception.type", "exception.message", "code.function", "code.filepath", "http.route", "error", "logger"}

// ConsumeLogs implements the OTLP logs consumer.
func (g *Generator) ConsumeLogs(_ context.Context, ld plog.Logs) error {
	rls := ld.ResourceLogs()
	for i := range rls.Len() {
		rl := rls.At(i)
		id := collector.IdentityFromResource(rl.Resource())
		sls := rl.ScopeLogs()
		for j := range sls.Len() {
			scope := sls.At(j).Scope()
			recs := sls.At(j).LogRecords()
			for k := range recs.Len() {
				lr := recs.At(k)
				r := Record{Identity: id, Severity: SeverityFromOTLP(int32(lr.SeverityNumber()), lr.SeverityText()), Body: collector.ValueString(lr.Body())}
				if len(g.dims) > 0 {
					r.Lookup = func(attr string) (string, bool) {
						for _, m := range []pcommon.Map{lr.Attributes(), scope.Attributes(), rl.Resource().Attributes()} {
							if v, ok := m.Get(attr); ok {
								return collector.ValueString(v), true
							}
						}
						return "", false
					}
				}
				if ts := lr.Timestamp(); ts != 0 {
					r.Time = ts.AsTime()
				} else if ts := lr.ObservedTimestamp(); ts != 0 {
					r.Time = ts.AsTime()
				}
				if !lr.TraceID().IsEmpty() {
					r.TraceID = lr.TraceID().String()
				}
				if !lr.SpanID().IsEmpty() {
					r.SpanID = lr.SpanID().String()
				}
				if r.Severity == semconv.SeverityError || r.Severity == semconv.SeverityFatal {
					for _, a := range evidenceAttributes {
						if v, ok := lr.Attributes().Get(a); ok {
							if r.Attributes == nil {
								r.Attributes = map[string]string{}
							}
							r.Attributes[a] = collector.ValueString(v)
						}
					}
				}
				g.Observe(r)
			}
		}
	}
	return nil
}

// SeverityFromOTLP maps an OTLP severity number (or, without one, its
// text) to a semconv severity.
func SeverityFromOTLP(num int32, text string) string {
	switch {
	case num >= 21:
		return semconv.SeverityFatal
	case num >= 17:
		return semconv.SeverityError
	case num >= 13:
		return semconv.SeverityWarn
	case num >= 9:
		return semconv.SeverityInfo
	case num >= 5:
		return semconv.SeverityDebug
	case num >= 1:
		return semconv.SeverityTrace
	}
	return SeverityFromText(text)
}

// SeverityFromText maps a level name as loggers write it ("ERROR", "warn",
// "Warning", "crit", "E", ...) to a semconv severity.
func SeverityFromText(s string) string {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "trace", "trc", "t":
		return semconv.SeverityTrace
	case "debug", "dbg", "d", "debug2", "debug3":
		return semconv.SeverityDebug
	case "info", "inf", "i", "information", "informational", "notice":
		return semconv.SeverityInfo
	case "warn", "warning", "wrn", "w":
		return semconv.SeverityWarn
	case "error", "err", "e", "eror":
		return semconv.SeverityError
	case "fatal", "ftl", "f", "critical", "crit", "panic", "emerg", "emergency", "alert":
		return semconv.SeverityFatal
	}
	return semconv.SeverityUnknown
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

// Flush writes log_records_total at time at.
func (g *Generator) Flush(at time.Time) {
	samples := g.counts.Collect(at)
	if len(samples) == 0 {
		return
	}
	app := g.out.AppenderV2(context.Background())
	t := at.UnixMilli()
	for _, s := range samples {
		ts := t
		if !s.At.IsZero() {
			ts = s.At.UnixMilli()
		}
		if _, err := app.Append(0, s.Labels, 0, ts, s.Value, nil, nil, storage.AOptions{}); err != nil {
			g.logger.Debug("Log metric sample refused", "series", s.Labels.String(), "err", err)
		}
	}
	if err := app.Commit(); err != nil {
		g.flushErrs.Inc()
		g.logger.Error("Writing log metrics failed", "err", err)
	}
}
