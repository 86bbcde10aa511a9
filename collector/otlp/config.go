// Package otlp receives OpenTelemetry metrics, traces and logs over OTLP,
// on gRPC (default 127.0.0.1:4317) and HTTP (default 127.0.0.1:4318, paths
// /v1/metrics, /v1/traces, /v1/logs, protobuf or JSON, optionally gzip),
// answering with the status codes and partial-success responses of the OTLP
// specification.
//
// Metrics are translated to Prometheus series by Prometheus's own OTLP
// translator (metric name suffixes for units and _total, target_info,
// job/instance from service.namespace/service.name/service.instance.id,
// exponential histograms as native histograms) and written through the hot
// path. Traces and logs are handed to their consumers (span metrics, log
// metrics). The resource attribute service.version becomes the "version"
// label of every series, tying it to the deployment that produced it.
package otlp

import (
	"errors"
	"fmt"
	"net"

	"github.com/alecthomas/units"
	"github.com/prometheus/common/model"

	"github.com/vigilhq/vigil/collector"
)

// Config configures the OTLP receivers.
type Config struct {
	GRPC GRPCConfig `yaml:"grpc"`
	HTTP HTTPConfig `yaml:"http"`
	// PromoteResourceAttributes are resource attributes copied onto every
	// metric series as labels (service.version always is, as "version").
	PromoteResourceAttributes []string `yaml:"promote_resource_attributes"`
	// KeepIdentifyingResourceAttributes keeps service.name,
	// service.namespace and service.instance.id on target_info.
	KeepIdentifyingResourceAttributes bool `yaml:"keep_identifying_resource_attributes"`
	// MaxSampleAge and MaxSampleFuture were moved to ingest.max_sample_age
	// and ingest.max_sample_future, which apply to every receiver; setting
	// them here is a configuration error that says so.
	MaxSampleAge    model.Duration `yaml:"max_sample_age,omitempty"`
	MaxSampleFuture model.Duration `yaml:"max_sample_future,omitempty"`
}

// GRPCConfig is the OTLP/gRPC listener.
type GRPCConfig struct {
	// ListenAddress is where OTLP/gRPC is served; empty disables it.
	ListenAddress string `yaml:"listen_address"`
	// MaxRecvMsgSize is the largest request accepted (decompressed).
	MaxRecvMsgSize units.Base2Bytes `yaml:"max_recv_msg_size"`
}

// HTTPConfig is the OTLP/HTTP listener. The same endpoints are also served
// on Vigil's main HTTP address under /otlp/v1/*.
type HTTPConfig struct {
	// ListenAddress is where OTLP/HTTP is served; empty disables the listener.
	ListenAddress        string `yaml:"listen_address"`
	collector.BodyLimits `yaml:",inline"`
}

// DefaultConfig serves OTLP on loopback on the standard ports.
func DefaultConfig() Config {
	return Config{
		GRPC: GRPCConfig{ListenAddress: "127.0.0.1:4317", MaxRecvMsgSize: 64 * units.MiB},
		HTTP: HTTPConfig{ListenAddress: "127.0.0.1:4318", BodyLimits: collector.DefaultBodyLimits()},
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if a := c.GRPC.ListenAddress; a != "" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("grpc.listen_address %q: %w", a, err)
		}
	}
	if a := c.HTTP.ListenAddress; a != "" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("http.listen_address %q: %w", a, err)
		}
	}
	if c.GRPC.MaxRecvMsgSize <= 0 {
		return fmt.Errorf("grpc.max_recv_msg_size must be positive, got %s", c.GRPC.MaxRecvMsgSize)
	}
	if err := c.HTTP.BodyLimits.Validate(); err != nil {
		return fmt.Errorf("http.%w", err)
	}
	if c.MaxSampleAge != 0 {
		return fmt.Errorf("max_sample_age: this setting moved to ingest.max_sample_age, which applies to every receiver (remote_write, OTLP, Loki push): set max_sample_age: %s under ingest: instead", c.MaxSampleAge)
	}
	if c.MaxSampleFuture != 0 {
		return fmt.Errorf("max_sample_future: this setting moved to ingest.max_sample_future, which applies to every receiver (remote_write, OTLP, Loki push): set max_sample_future: %s under ingest: instead", c.MaxSampleFuture)
	}
	for _, a := range c.PromoteResourceAttributes {
		if a == "" {
			return errors.New("promote_resource_attributes: empty attribute name")
		}
	}
	return nil
}
