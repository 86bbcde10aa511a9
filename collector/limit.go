package collector

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
)

// LimitConfig bounds how many ingest requests are decoded and written at
// once, which bounds ingest memory: at most MaxConcurrentRequests bodies of
// up to max_decompressed_bytes are decoded at once. A request's body is
// read before it takes a slot, within BodyReadTimeout, so a client that
// sends slowly holds its own connection, never a slot others wait for.
type LimitConfig struct {
	// MaxConcurrentRequests is how many ingest requests are processed at
	// once; the default is 4 per CPU, at least 8.
	MaxConcurrentRequests int `yaml:"max_concurrent_requests"`
	// MaxQueueDuration is how long a request waits for its turn before it
	// is refused with 429 Too Many Requests and a Retry-After header.
	MaxQueueDuration model.Duration `yaml:"max_queue_duration"`
	// BodyReadTimeout is how long a request's body may take to arrive once
	// its headers are read; a slower one is answered 408 Request Timeout.
	BodyReadTimeout model.Duration `yaml:"body_read_timeout"`
}

// DefaultLimitConfig sizes the limit to the machine.
func DefaultLimitConfig() LimitConfig {
	return LimitConfig{
		MaxConcurrentRequests: max(8, 4*runtime.GOMAXPROCS(0)),
		MaxQueueDuration:      model.Duration(10 * time.Second),
		BodyReadTimeout:       model.Duration(10 * time.Second),
	}
}

// Validate reports a limit that cannot work.
func (c LimitConfig) Validate() error {
	if c.MaxConcurrentRequests <= 0 {
		return fmt.Errorf("max_concurrent_requests must be positive, got %d", c.MaxConcurrentRequests)
	}
	if c.MaxQueueDuration < 0 {
		return errors.New("max_queue_duration must not be negative")
	}
	if c.BodyReadTimeout <= 0 {
		return fmt.Errorf("body_read_timeout must be positive, got %s", c.BodyReadTimeout)
	}
	return nil
}

// Limiter admits ingest requests up to the configured concurrency. A request
// that cannot start within MaxQueueDuration is answered 429 with
// Retry-After, which Prometheus, the OTLP exporters and Promtail all honour
// by backing off and retrying: the sender slows down instead of Vigil
// running out of memory.
type Limiter struct {
	slots     chan struct{}
	wait      time.Duration
	bodyRead  time.Duration
	queued    prometheus.Gauge
	throttled *prometheus.CounterVec
}

// NewLimiter builds a limiter; reg may be nil.
func NewLimiter(cfg LimitConfig, reg prometheus.Registerer) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Limiter{
		slots:    make(chan struct{}, cfg.MaxConcurrentRequests),
		wait:     time.Duration(cfg.MaxQueueDuration),
		bodyRead: time.Duration(cfg.BodyReadTimeout),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_ingest_requests_queued", Help: "Ingest requests waiting for a processing slot.",
		}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_ingest_requests_throttled_total", Help: "Ingest requests refused with 429 because max_concurrent_requests were busy for max_queue_duration.",
		}, []string{"receiver"}),
	}
	if reg != nil {
		reg.MustRegister(l.queued, l.throttled,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "vigil_ingest_requests_processing", Help: "Ingest requests being decoded and written.",
			}, func() float64 { return float64(len(l.slots)) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "vigil_ingest_max_concurrent_requests", Help: "The configured max_concurrent_requests.",
			}, func() float64 { return float64(cap(l.slots)) }))
	}
	return l, nil
}

// Acquire waits up to max_queue_duration for a processing slot; false
// means the caller must refuse the request (it is counted as throttled for
// receiver). A true result must be paired with Release.
func (l *Limiter) Acquire(ctx context.Context, receiver string) bool {
	select {
	case l.slots <- struct{}{}:
		return true
	default:
	}
	l.queued.Inc()
	defer l.queued.Dec()
	timer := time.NewTimer(l.wait)
	defer timer.Stop()
	select {
	case l.slots <- struct{}{}:
		return true
	case <-timer.C:
		l.throttled.WithLabelValues(receiver).Inc()
		return false
	case <-ctx.Done():
		return false
	}
}

// Release frees the slot Acquire took.
func (l *Limiter) Release() { <-l.slots }

// RetryAfter is the Retry-After value, in seconds, for a refused request.
func (l *Limiter) RetryAfter() int { return max(1, int(math.Ceil(l.wait.Seconds()))) }

// ReadAndAdmit reads r's body into buf, within maxBytes and the body read
// timeout, and only then waits for a processing slot for receiver, so
// that slow senders cannot hold the slots. On success the caller decodes
// buf and must call release when done. The error is a *StatusError: 413 or
// 408 from reading, 429 with RetryAfter when no slot freed up in time. A
// nil Limiter reads without a deadline and admits everything.
func (l *Limiter) ReadAndAdmit(w http.ResponseWriter, r *http.Request, receiver string, maxBytes int64, buf *Buffer) (release func(), err error) {
	if l == nil {
		return func() {}, ReadBody(w, r, maxBytes, 0, buf)
	}
	if err := ReadBody(w, r, maxBytes, l.bodyRead, buf); err != nil {
		return nil, err
	}
	if !l.Acquire(r.Context(), receiver) {
		if err := r.Context().Err(); err != nil {
			return nil, Errorf(http.StatusServiceUnavailable, "request cancelled while waiting for a processing slot: %w", err)
		}
		return nil, &StatusError{Code: http.StatusTooManyRequests, RetryAfter: l.RetryAfter(),
			Err: fmt.Errorf("too many ingest requests: %d are being processed and this one waited %s; retry later", cap(l.slots), l.wait)}
	}
	return l.Release, nil
}

// Register exports the throttled counter of receiver at 0 from the start.
func (l *Limiter) Register(receiver string) {
	if l != nil {
		l.throttled.WithLabelValues(receiver)
	}
}
