// Package spanmetrics turns every span into RED metrics — calls and a
// duration histogram per service, operation (span name), kind, status code
// and version — in the manner of the OpenTelemetry Collector's spanmetrics
// connector, counts service-graph edges between a client span and its
// server span, and keeps the most recent error spans of each service
// version as evidence. Spans themselves are not stored.
package spanmetrics

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/common/model"

	"github.com/vigilhq/vigil/internal/semconv"
)

// Config configures span metrics.
type Config struct {
	// FlushInterval is how often the metrics are written to storage.
	FlushInterval model.Duration `yaml:"flush_interval"`
	// Buckets are the classic histogram buckets in seconds, written as
	// traces_span_metrics_duration_seconds_bucket; empty writes none.
	Buckets []float64 `yaml:"buckets"`
	// NativeHistograms also writes the duration as a native histogram.
	NativeHistograms bool `yaml:"native_histograms"`
	// Dimensions are span attributes added as labels (dots become
	// underscores), e.g. http.route, rpc.method.
	Dimensions []string `yaml:"dimensions"`
	// MaxSeries bounds the series; spans beyond it are counted under the
	// service's span_name="_other_" series.
	MaxSeries int `yaml:"max_series"`
	// Expiration drops series not updated for this long.
	Expiration model.Duration `yaml:"expiration"`
	// ServiceGraph pairs client and server spans.
	ServiceGraph ServiceGraphConfig `yaml:"service_graph"`
	// ErrorTraces keeps recent error spans per service version.
	ErrorTraces RingConfig `yaml:"error_traces"`
}

// ServiceGraphConfig bounds the pairing of client and server spans.
type ServiceGraphConfig struct {
	// Wait is how long a span waits for its other side.
	Wait model.Duration `yaml:"wait"`
	// MaxPending bounds the spans waiting for their other side.
	MaxPending int `yaml:"max_pending"`
	// MaxEdges bounds the edges (client, server, versions).
	MaxEdges int `yaml:"max_edges"`
}

// RingConfig bounds an evidence ring.
type RingConfig struct {
	PerService int `yaml:"per_service_version"`
	MaxKeys    int `yaml:"max_service_versions"`
}

// DefaultConfig mirrors the OpenTelemetry spanmetrics connector's default
// buckets (2 ms to 15 s), in seconds.
func DefaultConfig() Config {
	return Config{
		FlushInterval:    model.Duration(15 * time.Second),
		Buckets:          []float64{0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1, 1.4, 2, 5, 10, 15},
		NativeHistograms: true,
		MaxSeries:        50000,
		Expiration:       model.Duration(5 * time.Minute),
		ServiceGraph:     ServiceGraphConfig{Wait: model.Duration(10 * time.Second), MaxPending: 10000, MaxEdges: 10000},
		ErrorTraces:      RingConfig{PerService: 50, MaxKeys: 1000},
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.FlushInterval < model.Duration(time.Second):
		return fmt.Errorf("flush_interval must be at least 1s, got %s", c.FlushInterval)
	case !slices.IsSorted(c.Buckets):
		return errors.New("buckets must be in increasing order")
	case c.MaxSeries <= 0:
		return fmt.Errorf("max_series must be positive, got %d", c.MaxSeries)
	case c.Expiration <= c.FlushInterval:
		return fmt.Errorf("expiration (%s) must be longer than flush_interval (%s)", c.Expiration, c.FlushInterval)
	case c.ServiceGraph.Wait <= 0 || c.ServiceGraph.MaxPending <= 0 || c.ServiceGraph.MaxEdges <= 0:
		return errors.New("service_graph: wait, max_pending and max_edges must be positive")
	case c.ErrorTraces.PerService <= 0 || c.ErrorTraces.MaxKeys <= 0:
		return errors.New("error_traces: per_service_version and max_service_versions must be positive")
	}
	for i, b := range c.Buckets {
		if b <= 0 || (i > 0 && b == c.Buckets[i-1]) {
			return fmt.Errorf("buckets must be positive and distinct, got %v", c.Buckets)
		}
	}
	for _, d := range c.Dimensions {
		if d == "" {
			return errors.New("dimensions: empty attribute name")
		}
		if l := semconv.DimensionLabel(d); slices.Contains(semconv.SpanMetricLabels, l) {
			return fmt.Errorf("dimensions: %q would be the label %q, which every span metric has already", d, l)
		}
	}
	return nil
}
