package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/collector/otlp"
	"github.com/vigilhq/vigil/internal/config"
	"github.com/vigilhq/vigil/storage/otlpforward"
)

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
func startOTLPForwarders(cfg config.Config, traces otlp.TracesConsumer, logs otlp.LogsConsumer, logger *slog.Logger, reg prometheus.Registerer) (otlp.TracesConsumer, otlp.LogsConsumer, func(), error) {
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
