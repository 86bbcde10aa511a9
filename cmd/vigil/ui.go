package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/version"

	"github.com/vigilhq/vigil/collector/otlp"
	"github.com/vigilhq/vigil/deploy"
	"github.com/vigilhq/vigil/internal/config"
	"github.com/vigilhq/vigil/ui"
)

// startTime is when the process started, for the status page's uptime.
var startTime = time.Now()

// startUI wires the web UI: the deploy hook's deployments and verdicts, the
// embedded engine (through the verdict engine's querier, under the same
// limits) and the self-metrics. It registers the pages and returns the
// function that stops its sampler.
func startUI(cfg config.Config, hook *deploy.Hook, q deploy.PromQL, listeners []ui.Listener, reg *prometheus.Registry, mux ui.Mux, logger *slog.Logger) (func(), error) {
	u, err := ui.New(ui.Config{
		Deployments: hook,
		Query:       uiQuerier{q},
		Metrics:     reg,
		Version:     version.Version, Revision: version.GetRevision(), GoVersion: version.GoVersion,
		Started:     startTime,
		Listeners:   listeners,
		StoragePath: cfg.Storage.Path, Retention: retentionString(cfg.Storage),
		Step:                 time.Duration(cfg.Deploy.Step),
		TraceURLTemplate:     cfg.Web.TraceURLTemplate,
		GrafanaURL:           cfg.Web.GrafanaURL,
		GrafanaDatasourceUID: cfg.Web.GrafanaDatasourceUID,
		Logger:               logger.With("component", "ui"),
	})
	if err != nil {
		return nil, err
	}
	u.Register(mux)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { u.Run(ctx) })
	return func() {
		cancel()
		wg.Wait()
	}, nil
}

// uiListeners are the addresses Vigil listens on, for the status page.
func uiListeners(http net.Addr, o *otlp.Servers, tls bool) []ui.Listener {
	scheme := "http"
	if tls {
		scheme = "https"
	}
	out := []ui.Listener{{Name: "HTTP", Address: fmt.Sprintf("%s://%s", scheme, http), Serves: "this UI, the query API, remote_write (/api/v1/write), OTLP/HTTP (/otlp/v1), Loki push, deployment events, verify, /metrics"}}
	if o.GRPCAddr != nil {
		out = append(out, ui.Listener{Name: "OTLP/gRPC", Address: o.GRPCAddr.String(), Serves: "OTLP metrics, traces and logs"})
	}
	if o.HTTPAddr != nil {
		out = append(out, ui.Listener{Name: "OTLP/HTTP", Address: fmt.Sprintf("%s://%s", scheme, o.HTTPAddr), Serves: "OTLP metrics, traces and logs (/v1/metrics, /v1/traces, /v1/logs)"})
	}
	return out
}

// uiQuerier runs the UI's range queries with their series' labels.
type uiQuerier struct{ q deploy.PromQL }

func (u uiQuerier) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]ui.Series, error) {
	m, err := u.q.QueryMatrix(ctx, expr, start, end, step)
	if err != nil {
		return nil, err
	}
	out := make([]ui.Series, 0, len(m))
	for _, s := range m {
		us := ui.Series{Name: s.Metric.String(), Points: make([]ui.Point, 0, len(s.Floats))}
		for _, p := range s.Floats {
			us.Points = append(us.Points, ui.Point{T: time.UnixMilli(p.T), V: p.F})
		}
		out = append(out, us)
	}
	return out, nil
}
