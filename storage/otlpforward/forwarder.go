// Package otlpforward sends the traces and logs Vigil receives on to an
// OTLP/HTTP endpoint (Tempo, Loki's OTLP endpoint, an OpenTelemetry
// Collector) through a persistent disk queue: while the endpoint is down,
// requests wait on disk and are sent in order once it is back.
//
// Retries follow the OTLP/HTTP specification: 429, 502, 503 and 504 and
// network errors are retried with exponential backoff (honouring
// Retry-After); any other answer but 2xx drops the request and counts it.
package otlpforward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alecthomas/units"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/vigilhq/vigil/storage/diskqueue"
)

// Config is one OTLP forwarding target.
type Config struct {
	// Name tells targets apart in metrics and names the queue directory.
	Name string `yaml:"name"`
	// Endpoint is the OTLP/HTTP base URL; /v1/traces and /v1/logs are appended.
	Endpoint string `yaml:"endpoint"`
	// Signals to forward: traces, logs (both by default).
	Signals []string `yaml:"signals"`
	// Headers are sent with every request (e.g. X-Scope-OrgID).
	Headers map[string]string `yaml:"headers"`
	// BearerTokenFile holds a token sent as Authorization: Bearer.
	BearerTokenFile string         `yaml:"bearer_token_file"`
	Timeout         model.Duration `yaml:"timeout"`
	// MaxQueueSize bounds the queue on disk; beyond it the oldest requests
	// are dropped (counted, and logged as an error).
	MaxQueueSize units.Base2Bytes `yaml:"max_queue_size"`
	MinBackoff   model.Duration   `yaml:"min_backoff"`
	MaxBackoff   model.Duration   `yaml:"max_backoff"`
}

// Defaults fills what is left empty.
func (c *Config) Defaults() {
	if len(c.Signals) == 0 {
		c.Signals = []string{"traces", "logs"}
	}
	if c.Timeout == 0 {
		c.Timeout = model.Duration(10 * time.Second)
	}
	if c.MaxQueueSize == 0 {
		c.MaxQueueSize = units.GiB
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = model.Duration(100 * time.Millisecond)
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = model.Duration(30 * time.Second)
	}
}

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	if c.Name == "" || strings.ContainsAny(c.Name, `/\ `) {
		return fmt.Errorf("name %q must be set and contain no slash or space", c.Name)
	}
	u, err := url.Parse(c.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s: endpoint %q must be an http(s) URL", c.Name, c.Endpoint)
	}
	for _, s := range c.Signals {
		if s != "traces" && s != "logs" {
			return fmt.Errorf("%s: signal %q: want traces or logs", c.Name, s)
		}
	}
	if c.MaxQueueSize < 32*units.MiB {
		return fmt.Errorf("%s: max_queue_size must be at least 32MiB, got %s", c.Name, c.MaxQueueSize)
	}
	if c.Timeout <= 0 || c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff {
		return fmt.Errorf("%s: timeout and backoffs must be positive, max_backoff at least min_backoff", c.Name)
	}
	return nil
}

// Forwarder forwards to one target.
type Forwarder struct {
	cfg    Config
	queue  *diskqueue.Queue
	client *http.Client
	token  string
	logger *slog.Logger
	traces bool
	logs   bool

	sent, dropped, retried *prometheus.CounterVec

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// Record kinds in the queue: the first payload byte.
const (
	kindTraces byte = 't'
	kindLogs   byte = 'l'
)

// New opens the target's queue under dataDir/otlp-forward/<name> and starts
// sending.
func New(cfg Config, dataDir string, logger *slog.Logger, reg prometheus.Registerer) (*Forwarder, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{
		cfg: cfg, client: &http.Client{Timeout: time.Duration(cfg.Timeout)}, done: make(chan struct{}),
		logger: logger.With("target", cfg.Name),
		traces: slices.Contains(cfg.Signals, "traces"), logs: slices.Contains(cfg.Signals, "logs"),
	}
	if cfg.BearerTokenFile != "" {
		b, err := os.ReadFile(cfg.BearerTokenFile)
		if err != nil {
			return nil, fmt.Errorf("otlp_forward %s: read bearer_token_file: %w", cfg.Name, err)
		}
		f.token = strings.TrimSpace(string(b))
	}
	seg := int64(cfg.MaxQueueSize) / 16
	q, err := diskqueue.Open(diskqueue.Config{Dir: filepath.Join(dataDir, "otlp-forward", cfg.Name), MaxBytes: int64(cfg.MaxQueueSize), SegmentBytes: seg})
	if err != nil {
		return nil, fmt.Errorf("otlp_forward %s: %w", cfg.Name, err)
	}
	f.queue = q
	labels := prometheus.Labels{"target": cfg.Name}
	f.sent = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_otlp_forward_sent_requests_total", Help: "OTLP requests delivered to the target.", ConstLabels: labels}, []string{"signal"})
	f.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_otlp_forward_dropped_requests_total", Help: "OTLP requests dropped: refused by the target (rejected) or pushed out of a full queue (queue_full).", ConstLabels: labels}, []string{"reason"})
	f.retried = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_otlp_forward_retries_total", Help: "Failed sends that will be retried, by cause.", ConstLabels: labels}, []string{"cause"})
	if reg != nil {
		reg.MustRegister(f.sent, f.dropped, f.retried,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vigil_otlp_forward_queue_bytes", Help: "Bytes of requests waiting in the target's disk queue.", ConstLabels: labels},
				func() float64 { return float64(q.Pending()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "vigil_otlp_forward_queue_dropped_requests_total", Help: "Requests dropped because the disk queue reached max_queue_size.", ConstLabels: labels},
				func() float64 { return float64(q.Dropped()) }),
		)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go f.run(ctx)
	return f, nil
}

// ConsumeTraces queues td for the target.
func (f *Forwarder) ConsumeTraces(_ context.Context, td ptrace.Traces) error {
	if !f.traces || td.SpanCount() == 0 {
		return nil
	}
	b, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		return fmt.Errorf("encode traces for %s: %w", f.cfg.Name, err)
	}
	return f.enqueue(kindTraces, b)
}

// ConsumeLogs queues ld for the target.
func (f *Forwarder) ConsumeLogs(_ context.Context, ld plog.Logs) error {
	if !f.logs || ld.LogRecordCount() == 0 {
		return nil
	}
	b, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	if err != nil {
		return fmt.Errorf("encode logs for %s: %w", f.cfg.Name, err)
	}
	return f.enqueue(kindLogs, b)
}

func (f *Forwarder) enqueue(kind byte, b []byte) error {
	before := f.queue.Dropped()
	if err := f.queue.Append(append([]byte{kind}, b...)); err != nil {
		return fmt.Errorf("queue for %s: %w", f.cfg.Name, err)
	}
	if d := f.queue.Dropped() - before; d > 0 {
		f.logger.Error("OTLP forwarding queue is full: the oldest requests were dropped", "dropped", d, "max_queue_size", f.cfg.MaxQueueSize)
	}
	return nil
}

// run sends queued requests in order until ctx ends.
func (f *Forwarder) run(ctx context.Context) {
	defer close(f.done)
	sync := time.NewTicker(time.Second)
	defer sync.Stop()
	backoff := time.Duration(f.cfg.MinBackoff)
	for {
		rec, ok, err := f.queue.Peek()
		if err != nil {
			f.logger.Error("Reading the OTLP forwarding queue failed", "err", err)
		}
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-f.queue.Wait():
			case <-sync.C:
				_ = f.queue.Sync()
			}
			continue
		}
		retry, wait := f.send(ctx, rec.Payload)
		if retry {
			if wait == 0 {
				wait = backoff + rand.N(backoff/2+1)
				backoff = min(2*backoff, time.Duration(f.cfg.MaxBackoff))
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			continue
		}
		backoff = time.Duration(f.cfg.MinBackoff)
		if err := f.queue.Commit(rec); err != nil {
			f.logger.Error("Saving the OTLP forwarding queue position failed", "err", err)
		}
	}
}

// send posts one request; retry says whether to try it again, after wait
// when the target said (Retry-After).
func (f *Forwarder) send(ctx context.Context, payload []byte) (retry bool, wait time.Duration) {
	if len(payload) == 0 {
		return false, 0
	}
	signal, path := "traces", "/v1/traces"
	if payload[0] == kindLogs {
		signal, path = "logs", "/v1/logs"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(f.cfg.Endpoint, "/")+path, bytes.NewReader(payload[1:]))
	if err != nil {
		f.dropped.WithLabelValues("rejected").Inc()
		return false, 0
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	for k, v := range f.cfg.Headers {
		req.Header.Set(k, v)
	}
	if f.token != "" {
		req.Header.Set("Authorization", "Bearer "+f.token)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			f.retried.WithLabelValues("network").Inc()
			f.logger.Debug("OTLP forwarding failed; retrying", "err", err)
		}
		return true, 0
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	switch code := resp.StatusCode; {
	case code/100 == 2:
		f.sent.WithLabelValues(signal).Inc()
		return false, 0
	case code == http.StatusTooManyRequests || code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout:
		f.retried.WithLabelValues(strconv.Itoa(code)).Inc()
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			return true, min(time.Duration(s)*time.Second, time.Duration(f.cfg.MaxBackoff))
		}
		return true, 0
	default:
		f.dropped.WithLabelValues("rejected").Inc()
		f.logger.Warn("OTLP target refused a request; dropped", "signal", signal, "status", resp.Status, "body", string(body))
		return false, 0
	}
}

// Close stops sending (what is queued stays on disk for the next start).
func (f *Forwarder) Close() error {
	var err error
	f.once.Do(func() {
		f.cancel()
		<-f.done
		err = f.queue.Close()
	})
	if err != nil {
		return errors.New("close OTLP forwarding queue: " + err.Error())
	}
	return nil
}
