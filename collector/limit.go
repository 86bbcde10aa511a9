package collector

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
)

// LimitConfig bounds how many ingest requests are decoded and written at
// once, which bounds ingest memory: at most MaxConcurrentRequests bodies of
// up to max_request_bytes (compressed) and max_decompressed_bytes are held.
type LimitConfig struct {
	// MaxConcurrentRequests is how many ingest requests are processed at
	// once; the default is 4 per CPU, at least 8.
	MaxConcurrentRequests int `yaml:"max_concurrent_requests"`
	// MaxQueueDuration is how long a request waits for its turn before it
	// is refused with 429 Too Many Requests and a Retry-After header.
	MaxQueueDuration model.Duration `yaml:"max_queue_duration"`
}

// DefaultLimitConfig sizes the limit to the machine.
func DefaultLimitConfig() LimitConfig {
	return LimitConfig{
		MaxConcurrentRequests: max(8, 4*runtime.GOMAXPROCS(0)),
		MaxQueueDuration:      model.Duration(10 * time.Second),
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
	queued    prometheus.Gauge
	throttled *prometheus.CounterVec
}

// NewLimiter builds a limiter; reg may be nil.
func NewLimiter(cfg LimitConfig, reg prometheus.Registerer) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Limiter{
		slots: make(chan struct{}, cfg.MaxConcurrentRequests),
		wait:  time.Duration(cfg.MaxQueueDuration),
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

// Wrap admits requests to h for the named receiver, answering 429 with
// Retry-After when no slot frees up in time.
func (l *Limiter) Wrap(receiver string, h http.Handler) http.Handler {
	if l == nil {
		return h
	}
	l.throttled.WithLabelValues(receiver) // exported at 0 from the start
	retryAfter := strconv.Itoa(l.RetryAfter())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !l.Acquire(r.Context(), receiver) {
			if r.Context().Err() != nil {
				return
			}
			w.Header().Set("Retry-After", retryAfter)
			http.Error(w, fmt.Sprintf("too many ingest requests: %d are being processed and this one waited %s; retry later", cap(l.slots), l.wait), http.StatusTooManyRequests)
			return
		}
		defer l.Release()
		h.ServeHTTP(w, r)
	})
}
