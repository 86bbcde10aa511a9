// Package collector holds what every receiver shares: the ingest
// self-metrics and the reading of request bodies within size limits. The
// receivers themselves live in subpackages named for their protocol.
package collector

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a sample is rejected, used as the "reason" label of
// vigil_ingest_rejected_samples_total.
const (
	ReasonOutOfOrder    = "out_of_order"
	ReasonTooOld        = "too_old"
	ReasonDuplicate     = "duplicate_timestamp"
	ReasonOutOfBounds   = "out_of_bounds"
	ReasonFuture        = "too_far_in_future"
	ReasonInvalidLabels = "invalid_labels"
	ReasonInvalidSample = "invalid_sample"
	ReasonStorage       = "storage_error"
	ReasonLimit         = "limit"
	ReasonSeriesLimit   = "series_limit"
	ReasonUnsupported   = "unsupported"
)

// Metrics are the ingest self-metrics, labelled by receiver. One instance is
// shared by all receivers so that a dashboard can sum across them.
type Metrics struct {
	Requests        *prometheus.CounterVec
	RequestDuration *prometheus.HistogramVec
	ReceivedBytes   *prometheus.CounterVec
	Samples         *prometheus.CounterVec
	Rejected        *prometheus.CounterVec
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
		InFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vigil_ingest_requests_in_flight",
			Help: "Ingest requests being handled now, by receiver.",
		}, []string{"receiver"}),
	}
	if reg != nil {
		reg.MustRegister(m.Requests, m.RequestDuration, m.ReceivedBytes, m.Samples, m.Rejected, m.InFlight)
	}
	return m
}
