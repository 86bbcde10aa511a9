// Package collector holds what every receiver shares: the ingest
// self-metrics, the reading of request bodies within size and time limits
// before an ingest slot is taken, the nesting checks that run before any
// decoder, the ingest limits, and the one mapping from a refused sample to
// its reason and answer. The receivers themselves live in subpackages
// named for their protocol.
package collector

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the ingest self-metrics, labelled by receiver. One instance is
// shared by all receivers so that a dashboard can sum across them.
type Metrics struct {
	Requests        *prometheus.CounterVec
	RequestDuration *prometheus.HistogramVec
	ReceivedBytes   *prometheus.CounterVec
	Samples         *prometheus.CounterVec
	Rejected        *prometheus.CounterVec
	RefusedRequests *prometheus.CounterVec
	InFlight        *prometheus.GaugeVec
}

// NewMetrics creates the ingest metrics and registers them with reg (which may be nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_ingest_requests_total",
			Help: "Ingest requests handled, by receiver and HTTP/gRPC status code.",
		}, []string{"receiver", "code"}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                            "vigil_ingest_request_duration_seconds",
			Help:                            "Time to decode, store and acknowledge an ingest request, by receiver.",
			Buckets:                         []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  100,
			NativeHistogramMinResetDuration: 0,
		}, []string{"receiver"}),
		ReceivedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_ingest_received_bytes_total",
			Help: "Request body bytes received, by receiver and encoding stage (wire or decompressed).",
		}, []string{"receiver", "stage"}),
		Samples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_ingest_samples_total",
			Help: "Samples, histograms and exemplars accepted and durable in the WAL, by receiver and kind.",
		}, []string{"receiver", "kind"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_ingest_rejected_samples_total",
			Help: "Samples rejected, by receiver and reason.",
		}, []string{"receiver", "reason"}),
		RefusedRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_ingest_refused_requests_total",
			Help: "Whole ingest requests refused before decoding, by receiver and reason (too_deep, body_read_timeout, too_large).",
		}, []string{"receiver", "reason"}),
		InFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vigil_ingest_requests_in_flight",
			Help: "Ingest requests being handled now, by receiver.",
		}, []string{"receiver"}),
	}
	if reg != nil {
		reg.MustRegister(m.Requests, m.RequestDuration, m.ReceivedBytes, m.Samples, m.Rejected, m.RefusedRequests, m.InFlight)
	}
	return m
}
