package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigilhq/vigil/collector/logmetrics"
	"github.com/vigilhq/vigil/collector/spanmetrics"
	"github.com/vigilhq/vigil/deploy"
	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/config"
	"github.com/vigilhq/vigil/internal/semconv"
	"github.com/vigilhq/vigil/query"
	"github.com/vigilhq/vigil/storage"
)

// startDeploy wires the deploy component: deployment records and the
// verdict hook on the embedded PromQL engine, with the collector's error
// rings as evidence. It registers the routes and returns the hook and the
// function that stops it.
func startDeploy(cfg config.Config, store *storage.Storage, engine *query.Engine, spans *spanmetrics.Generator, logs *logmetrics.Generator,
	mux deploy.Mux, authenticated bool, logger *slog.Logger, reg prometheus.Registerer,
) (hook *deploy.Hook, stop func(), err error) {
	dcfg := cfg.DeployConfig()
	actors := []deploy.Actor{deploy.WebhookActor{}}
	if dcfg.Kubernetes.Enabled {
		k, err := deploy.NewKubernetesActor(dcfg.Kubernetes)
		if err != nil {
			return nil, nil, err
		}
		actors = append(actors, k)
	}
	h, err := deploy.New(deploy.Options{
		Config:     dcfg,
		Dir:        cfg.Storage.Path,
		Out:        store,
		Querier:    deploy.PromQL{Engine: engine, Queryable: store},
		Evidence:   ringEvidence{spans: spans, logs: logs},
		Actors:     actors,
		Logger:     logger.With("component", "deploy"),
		Registerer: reg,

		// Vigil acts only when every request proves who sent it.
		AllowActions: authenticated,
		// Only Vigil writes log_records_total, so its labels are known; span
		// metrics may come from an OpenTelemetry Collector with any labels.
		SeriesLabels: verdict.SeriesLabels{semconv.LogRecords: cfg.LogMetrics.Labels()},
	})
	if err != nil {
		return nil, nil, err
	}
	h.Register(mux)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { h.Run(ctx) })
	wg.Go(func() {
		deploy.WatchSelectors(ctx, h.Catalog(), deploy.PromQL{Engine: engine, Queryable: store}, time.Duration(dcfg.SeriesInterval), logger.With("component", "deploy"))
	})
	return h, func() {
		cancel()
		wg.Wait()
		if err := h.Close(); err != nil {
			logger.Warn("Closing the deployments file failed", "err", err)
		}
	}, nil
}

// ringEvidence reads the collector's rings of recent error logs and traces.
type ringEvidence struct {
	spans *spanmetrics.Generator
	logs  *logmetrics.Generator
}

func (r ringEvidence) ErrorLogs(service, version string, since time.Time, limit int) []verdict.LogLine {
	var out []verdict.LogLine
	for _, rec := range r.logs.ErrorLogs().Recent(service, version, since, limit) {
		out = append(out, verdict.LogLine{Body: rec.Item.Body, TraceID: rec.Item.TraceID, Last: rec.At})
	}
	return out
}

// ErrorTraces are up to limit example error traces, one span each: the
// client and the server span of one trace are one example.
func (r ringEvidence) ErrorTraces(service, version string, since time.Time, limit int) []verdict.TraceRef {
	var out []verdict.TraceRef
	seen := map[string]bool{}
	for _, rec := range r.spans.ErrorTraces().Recent(service, version, since, 4*limit) {
		if seen[rec.Item.TraceID] {
			continue
		}
		seen[rec.Item.TraceID] = true
		out = append(out, verdict.TraceRef{TraceID: rec.Item.TraceID, Span: rec.Item.SpanName, Message: rec.Item.StatusMessage, At: rec.At})
		if len(out) == limit {
			break
		}
	}
	return out
}
