package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	promconfig "github.com/prometheus/prometheus/config"
	promstorage "github.com/prometheus/prometheus/storage"
	"go.yaml.in/yaml/v3"

	"github.com/vigilhq/vigil/collector/otlp"
	"github.com/vigilhq/vigil/storage"
	"github.com/vigilhq/vigil/storage/otlpforward"
)

// RemoteWriteSection is Prometheus's `remote_write:` list, decoded by
// Prometheus's own config types: url, remote_timeout, headers, name,
// write_relabel_configs, basic_auth, authorization, oauth2, tls_config,
// proxy_url, queue_config, protobuf_message, send_native_histograms, ...
type RemoteWriteSection []*promconfig.RemoteWriteConfig

// UnmarshalYAML decodes the list strictly and checks it as Prometheus does.
func (r *RemoteWriteSection) UnmarshalYAML(n *yaml.Node) error {
	var list []*promconfig.RemoteWriteConfig
	if err := decodePrometheusYAML(n, &list); err != nil {
		return err
	}
	names := map[string]bool{}
	for i, rw := range list {
		if rw == nil {
			return fmt.Errorf("remote_write[%d] is empty", i)
		}
		if u := (*url.URL)(rw.URL.URL); u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("remote_write[%d]: url %q: scheme must be http or https", i, u)
		}
		if err := rw.HTTPClientConfig.Validate(); err != nil {
			return fmt.Errorf("remote_write[%d]: %w", i, err)
		}
		if rw.Name != "" {
			if names[rw.Name] {
				return fmt.Errorf("remote_write[%d]: found multiple remote write configs with job name %q", i, rw.Name)
			}
			names[rw.Name] = true
		}
	}
	*r = list
	return nil
}

// forwardConfig is what the forwarder applies (at start and on reload).
func (c Config) forwardConfig() storage.ForwardConfig {
	return storage.ForwardConfig{RemoteWrite: c.RemoteWrite, RemoteRead: c.RemoteRead, ExternalLabels: c.Global.ExternalLabels}
}

// RemoteReadSection is Prometheus's `remote_read:` list (url, read_recent,
// required_matchers, filter_external_labels, remote_timeout, auth, tls).
type RemoteReadSection []*promconfig.RemoteReadConfig

// UnmarshalYAML decodes the list strictly.
func (r *RemoteReadSection) UnmarshalYAML(n *yaml.Node) error {
	var list []*promconfig.RemoteReadConfig
	if err := decodePrometheusYAML(n, &list); err != nil {
		return err
	}
	for i, rr := range list {
		if rr == nil {
			return fmt.Errorf("remote_read[%d] is empty", i)
		}
		if err := rr.HTTPClientConfig.Validate(); err != nil {
			return fmt.Errorf("remote_read[%d]: %w", i, err)
		}
	}
	*r = list
	return nil
}

// queryStorage is what queries read: local storage, and the remote_read
// endpoints for what is not local.
type queryStorage struct {
	promstorage.Queryable
	promstorage.ExemplarQueryable
}

// teeTraces hands every OTLP trace request to the forwarders, then to span
// metrics. A forwarder that cannot queue fails the request before span
// metrics count it, so the client's retry is not counted twice.
type teeTraces []otlp.TracesConsumer

func (t teeTraces) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	for _, c := range t {
		if err := c.ConsumeTraces(ctx, td); err != nil {
			return err
		}
	}
	return nil
}

// teeLogs does the same for OTLP log requests.
type teeLogs []otlp.LogsConsumer

func (t teeLogs) ConsumeLogs(ctx context.Context, ld plog.Logs) error {
	for _, c := range t {
		if err := c.ConsumeLogs(ctx, ld); err != nil {
			return err
		}
	}
	return nil
}

// startOTLPForwarders opens the otlp_forward targets and puts them in front
// of the trace and log consumers.
func startOTLPForwarders(cfg Config, traces otlp.TracesConsumer, logs otlp.LogsConsumer, logger *slog.Logger, reg prometheus.Registerer) (otlp.TracesConsumer, otlp.LogsConsumer, func(), error) {
	var fwds []*otlpforward.Forwarder
	closeAll := func() {
		for _, f := range fwds {
			if err := f.Close(); err != nil {
				logger.Warn("Closing OTLP forwarding failed", "err", err)
			}
		}
	}
	tt, tl := teeTraces{}, teeLogs{}
	for _, fc := range cfg.OTLPForward {
		f, err := otlpforward.New(fc, cfg.Storage.Path, logger.With("component", "otlp_forward"), reg)
		if err != nil {
			closeAll()
			return nil, nil, nil, err
		}
		fwds = append(fwds, f)
		tt, tl = append(tt, f), append(tl, f)
		logger.Info("Forwarding OTLP", "target", fc.Name, "endpoint", fc.Endpoint, "signals", fc.Signals)
	}
	if len(fwds) == 0 {
		return traces, logs, closeAll, nil
	}
	return append(tt, traces), append(tl, logs), closeAll, nil
}
