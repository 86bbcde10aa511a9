package evidence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/vigilhq/vigil/collector"
)

// Scaled out, verifications run on the store, but the error logs and
// traces a verdict quotes are seen by whichever collector replica received
// them. Each replica therefore forwards what it adds to its rings (error
// records only, a bounded queue) to the store, which keeps them in its own
// rings as if it had seen them: the store's verdicts carry the same
// evidence as a single Vigil's. The records travel as a Batch in
// POST /api/v1/evidence, a write-scope route the store accepts only from
// the writers of ingest.accept_derived_series_from.

// WireRecord is one evidence record between a replica and the store.
type WireRecord struct {
	// Ring is the rings' name: "error_logs" or "error_traces".
	Ring       string          `json:"ring"`
	Service    string          `json:"service"`
	Version    string          `json:"version"`
	ObservedAt time.Time       `json:"observedAt"`
	Record     json.RawMessage `json:"record"`
}

// Batch is the body of POST /api/v1/evidence. Records are numbered from Seq
// within the sending process's epoch, so that the store drops a batch
// it already has (a retry after a lost answer).
type Batch struct {
	// Collector is the sending replica (collector.replica).
	Collector string `json:"collector"`
	// Epoch is when the sending process started (Unix nanoseconds).
	Epoch   int64        `json:"epoch"`
	Seq     uint64       `json:"seq"`
	Records []WireRecord `json:"records"`
}

// Outbox queues the records rings add, oldest first, for a Forwarder. It
// holds at most max records; past that the oldest are dropped, counted.
type Outbox struct {
	mu    sync.Mutex
	max   int
	queue []WireRecord
	seq   uint64 // sequence number of queue[0]

	dropped prometheus.Counter
	encode  prometheus.Counter
}

// NewOutbox holds up to size records.
func NewOutbox(size int, reg prometheus.Registerer) *Outbox {
	o := &Outbox{
		max: max(size, 1),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_evidence_forward_dropped_records_total",
			Help: "Evidence records dropped unsent because the forwarding queue was full (collector.evidence_forward.max_queue).",
		}),
		encode: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_evidence_forward_encode_failures_total",
			Help: "Evidence records that could not be encoded for forwarding.",
		}),
	}
	if reg != nil {
		reg.MustRegister(o.dropped, o.encode, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vigil_evidence_forward_queue_records",
			Help: "Evidence records waiting to be forwarded.",
		}, func() float64 { return float64(o.Len()) }))
	}
	return o
}

func (o *Outbox) push(ring string, key Key, at time.Time, item any) {
	b, err := json.Marshal(item)
	if err != nil {
		o.encode.Inc()
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.queue) >= o.max {
		o.queue[0] = WireRecord{} // let the dropped record's memory go
		o.queue = o.queue[1:]
		o.seq++
		o.dropped.Inc()
	}
	o.queue = append(o.queue, WireRecord{Ring: ring, Service: key.Service, Version: key.Version, ObservedAt: at.UTC(), Record: b})
}

// Len is the number of records waiting.
func (o *Outbox) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue)
}

// peek returns up to n of the oldest records and the sequence number of
// the first, leaving them queued.
func (o *Outbox) peek(n int) (uint64, []WireRecord) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n = min(n, len(o.queue))
	return o.seq, append([]WireRecord(nil), o.queue[:n]...)
}

// ack removes records seq..seq+n-1, or what is left of them (some may
// have been dropped meanwhile).
func (o *Outbox) ack(seq uint64, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	end := seq + uint64(n)
	if end <= o.seq {
		return
	}
	k := min(int(end-o.seq), len(o.queue))
	clear(o.queue[:k])
	o.queue = o.queue[k:]
	o.seq += uint64(k)
}

// ForwardConfig is collector.evidence_forward: where a collector replica
// sends its evidence. The HTTP client settings are Prometheus's
// (authorization, basic_auth, tls_config, proxy_url, ...).
type ForwardConfig struct {
	// URL is the store's POST /api/v1/evidence, e.g.
	// http://vigil.vigil.svc:9400/api/v1/evidence. Empty: no forwarding.
	URL string `yaml:"url"`
	// Interval is how often queued records are sent.
	Interval model.Duration `yaml:"interval"`
	// Timeout bounds one request.
	Timeout model.Duration `yaml:"timeout"`
	// MaxQueue bounds the records waiting (the oldest are dropped past it).
	MaxQueue int `yaml:"max_queue"`
	// MaxBatch bounds the records of one request.
	MaxBatch int `yaml:"max_batch"`

	HTTPClientConfig config_util.HTTPClientConfig `yaml:",inline"`
}

// DefaultForwardConfig is the default of collector.evidence_forward (no URL: off).
func DefaultForwardConfig() ForwardConfig {
	return ForwardConfig{
		Interval:         model.Duration(2 * time.Second),
		Timeout:          model.Duration(10 * time.Second),
		MaxQueue:         2000,
		MaxBatch:         500,
		HTTPClientConfig: config_util.DefaultHTTPClientConfig,
	}
}

// Validate reports the first setting that cannot work.
func (c ForwardConfig) Validate() error {
	if c.URL == "" {
		return nil
	}
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url %q must be an http(s) URL", c.URL)
	}
	switch {
	case c.Interval <= 0:
		return fmt.Errorf("interval must be positive, got %s", c.Interval)
	case c.Timeout <= 0:
		return fmt.Errorf("timeout must be positive, got %s", c.Timeout)
	case c.MaxQueue <= 0 || c.MaxBatch <= 0:
		return fmt.Errorf("max_queue and max_batch must be positive, got %d and %d", c.MaxQueue, c.MaxBatch)
	case c.MaxBatch > MaxBatchRecords:
		return fmt.Errorf("max_batch must be at most %d, got %d", MaxBatchRecords, c.MaxBatch)
	}
	return c.HTTPClientConfig.Validate()
}

// Forwarder sends an Outbox's records to the store.
type Forwarder struct {
	cfg     ForwardConfig
	replica string
	epoch   int64
	out     *Outbox
	client  *http.Client
	logger  *slog.Logger

	sent   prometheus.Counter
	failed prometheus.Counter
}

// NewForwarder forwards what out queues, as replica.
func NewForwarder(cfg ForwardConfig, replica string, out *Outbox, logger *slog.Logger, reg prometheus.Registerer) (*Forwarder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.URL == "" || out == nil {
		return nil, errors.New("evidence forwarding: url and outbox are required")
	}
	client, err := config_util.NewClientFromConfig(cfg.HTTPClientConfig, "evidence_forward")
	if err != nil {
		return nil, fmt.Errorf("evidence forwarding: %w", err)
	}
	client.Timeout = time.Duration(cfg.Timeout)
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{
		cfg: cfg, replica: replica, epoch: time.Now().UnixNano(), out: out, client: client, logger: logger,
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_evidence_forward_sent_records_total", Help: "Evidence records the store accepted.",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_evidence_forward_failed_requests_total", Help: "Evidence forwarding requests that failed (retried at the next interval).",
		}),
	}
	if reg != nil {
		reg.MustRegister(f.sent, f.failed)
	}
	return f, nil
}

// Run sends every interval until ctx is done, then sends what is left,
// within one timeout, so that a replica scaled in hands over its evidence.
func (f *Forwarder) Run(ctx context.Context) {
	t := time.NewTicker(time.Duration(f.cfg.Interval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), time.Duration(f.cfg.Timeout))
			f.Flush(fctx)
			cancel()
			return
		case <-t.C:
			f.Flush(ctx)
		}
	}
}

// Flush sends queued records until the queue is empty or a request fails.
func (f *Forwarder) Flush(ctx context.Context) {
	for ctx.Err() == nil {
		seq, recs := f.out.peek(f.cfg.MaxBatch)
		if len(recs) == 0 {
			return
		}
		if err := f.send(ctx, Batch{Collector: f.replica, Epoch: f.epoch, Seq: seq, Records: recs}); err != nil {
			f.failed.Inc()
			f.logger.Warn("Forwarding evidence failed; retrying at the next interval", "url", f.cfg.URL, "records", f.out.Len(), "err", err)
			return
		}
		f.out.ack(seq, len(recs))
		f.sent.Add(float64(len(recs)))
	}
}

func (f *Forwarder) send(ctx context.Context, b Batch) error {
	body, err := json.Marshal(b)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// Limits of POST /api/v1/evidence.
const (
	// MaxBatchRecords bounds the records of one request.
	MaxBatchRecords = 5000
	// maxBatchBytes bounds a request's body.
	maxBatchBytes = 16 << 20
	// maxRecordBytes bounds one record.
	maxRecordBytes = 64 << 10
	// maxKeyBytes bounds a record's service and version.
	maxKeyBytes = 1024
	// maxSenders bounds the replicas whose position is remembered.
	maxSenders = 1024
)

// Sink is rings that forwarded records can be added to.
type Sink interface {
	Name() string
	ingest(collector string, w WireRecord) error
}

// ingest adds a forwarded record (it is not forwarded again).
func (r *Rings[T]) ingest(collector string, w WireRecord) error {
	var item T
	if err := json.Unmarshal(w.Record, &item); err != nil {
		return err
	}
	r.add(Key{Service: w.Service, Version: w.Version}, w.ObservedAt, collector, item)
	return nil
}

// Receiver is the store's POST /api/v1/evidence: it adds the records
// collector replicas forward to the store's own rings.
type Receiver struct {
	sinks       map[string]Sink
	allow       func(context.Context) (writer string, ok bool)
	readTimeout time.Duration
	logger      *slog.Logger

	mu   sync.Mutex
	seen map[string]position // per sending replica

	received  *prometheus.CounterVec
	duplicate prometheus.Counter
}

type position struct {
	epoch int64
	next  uint64
}

// NewReceiver adds forwarded records to sinks. allow says who sent a
// request and whether they may (the writers of
// ingest.accept_derived_series_from); a body must arrive within
// readTimeout (receivers.limits.body_read_timeout; 0: no limit).
func NewReceiver(allow func(context.Context) (string, bool), readTimeout time.Duration, logger *slog.Logger, reg prometheus.Registerer, sinks ...Sink) *Receiver {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Receiver{
		sinks: map[string]Sink{}, allow: allow, readTimeout: readTimeout, logger: logger, seen: map[string]position{},
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_evidence_received_records_total", Help: "Evidence records collector replicas forwarded to this Vigil, by ring.",
		}, []string{"ring"}),
		duplicate: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_evidence_received_duplicate_records_total", Help: "Forwarded evidence records received twice (a retried request), kept once.",
		}),
	}
	for _, s := range sinks {
		r.sinks[s.Name()] = s
	}
	if reg != nil {
		reg.MustRegister(r.received, r.duplicate)
	}
	return r
}

func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	writer, ok := r.allow(req.Context())
	if !ok {
		http.Error(w, fmt.Sprintf("%q may not forward evidence: list it in ingest.accept_derived_series_from", writer), http.StatusForbidden)
		return
	}
	buf := collector.GetBuffer()
	defer collector.PutBuffer(buf)
	if err := collector.ReadBody(w, req, maxBatchBytes, r.readTimeout, buf); err != nil {
		http.Error(w, "evidence batch: "+err.Error(), collector.StatusCode(err))
		return
	}
	var b Batch
	if err := json.Unmarshal(buf.B, &b); err != nil {
		http.Error(w, "decode evidence batch: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := r.validate(b); err != nil {
		http.Error(w, "invalid evidence batch: "+err.Error(), http.StatusBadRequest)
		return
	}
	recs := r.fresh(b)
	for _, rec := range recs {
		if err := r.sinks[rec.Ring].ingest(b.Collector, rec); err != nil {
			// validate decoded nothing; a record that does not fit its ring is
			// the sender's bug: keep the others, say so.
			r.logger.Warn("Forwarded evidence record does not decode", "collector", b.Collector, "ring", rec.Ring, "err", err)
			continue
		}
		r.received.WithLabelValues(rec.Ring).Inc()
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *Receiver) validate(b Batch) error {
	if len(b.Collector) > maxKeyBytes {
		return fmt.Errorf("collector name longer than %d bytes", maxKeyBytes)
	}
	if len(b.Records) > MaxBatchRecords {
		return fmt.Errorf("%d records, more than %d", len(b.Records), MaxBatchRecords)
	}
	for i, rec := range b.Records {
		switch {
		case r.sinks[rec.Ring] == nil:
			return fmt.Errorf("record %d: unknown ring %q", i, rec.Ring)
		case rec.Service == "":
			return fmt.Errorf("record %d: no service", i)
		case len(rec.Service) > maxKeyBytes || len(rec.Version) > maxKeyBytes:
			return fmt.Errorf("record %d: service or version longer than %d bytes", i, maxKeyBytes)
		case rec.ObservedAt.IsZero():
			return fmt.Errorf("record %d: no observedAt", i)
		case len(rec.Record) > maxRecordBytes:
			return fmt.Errorf("record %d: larger than %d bytes", i, maxRecordBytes)
		}
	}
	return nil
}

// fresh returns the records of b not received before from the same
// replica process (a retry of a request whose answer was lost).
func (r *Receiver) fresh(b Batch) []WireRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	recs := b.Records
	pos, ok := r.seen[b.Collector]
	if ok && pos.epoch == b.Epoch && b.Seq < pos.next {
		skip := min(pos.next-b.Seq, uint64(len(recs)))
		r.duplicate.Add(float64(skip))
		recs = recs[skip:]
	}
	if !ok && len(r.seen) >= maxSenders {
		clear(r.seen)
	}
	if end := b.Seq + uint64(len(b.Records)); !ok || pos.epoch != b.Epoch || end > pos.next {
		r.seen[b.Collector] = position{epoch: b.Epoch, next: end}
	}
	return recs
}
