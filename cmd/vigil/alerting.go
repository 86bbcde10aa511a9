package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigilhq/vigil/alerting"
	"github.com/vigilhq/vigil/internal/config"
	"github.com/vigilhq/vigil/query"
	"github.com/vigilhq/vigil/storage"
)

// newAlerting builds the rules manager and notifier over storage.
func newAlerting(cfg config.Config, store *storage.Storage, engine *query.Engine, logger *slog.Logger, reg prometheus.Registerer) (*alerting.Manager, error) {
	m, err := alerting.New(cfg.AlertingConfig(), alerting.Options{
		Engine:        engine,
		Queryable:     store,
		Appendable:    store,
		QueueCapacity: cfg.Notifier.QueueCapacity,
		Logger:        logger,
		Registerer:    reg,
	})
	if err != nil {
		return nil, fmt.Errorf("start rule evaluation: %w", err)
	}
	return m, nil
}

// reloader re-reads the configuration on SIGHUP and POST /-/reload (admin
// scope) and applies what can change at run time: token files and the web
// config file, rule files, Alertmanagers, external labels. A bad file
// leaves everything running as it was.
type reloader struct {
	load    func() (config.Config, error)
	apply   func(config.Config) error
	logger  *slog.Logger
	enabled bool // web.enable_lifecycle

	mu      sync.Mutex
	success prometheus.Gauge
	last    prometheus.Gauge
}

func newReloader(cfg config.Config, load func() (config.Config, error), apply func(config.Config) error, logger *slog.Logger, reg prometheus.Registerer) (*reloader, error) {
	r := &reloader{
		load: load, apply: apply, logger: logger, enabled: cfg.Web.EnableLifecycle,
		success: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_config_last_reload_successful", Help: "Whether the last configuration reload attempt was successful.",
		}),
		last: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_config_last_reload_success_timestamp_seconds", Help: "Timestamp of the last successful configuration reload.",
		}),
	}
	reg.MustRegister(r.success, r.last)
	r.success.Set(1)
	r.last.SetToCurrentTime()
	return r, nil
}

// reload loads and applies the configuration once.
func (r *reloader) reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cfg, err := r.load()
	if err == nil {
		err = r.apply(cfg)
	}
	if err != nil {
		r.success.Set(0)
		r.logger.Error("Reloading the configuration failed; the previous configuration keeps running", "err", err)
		return err
	}
	r.success.Set(1)
	r.last.SetToCurrentTime()
	r.logger.Info("Configuration reloaded")
	return nil
}

// ServeHTTP answers POST /-/reload as Prometheus does: 200 when the new
// configuration is running, 500 with the problem when it is not.
func (r *reloader) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if !r.enabled {
		http.Error(w, "Lifecycle API is not enabled (web.enable_lifecycle).", http.StatusForbidden)
		return
	}
	if req.Method != http.MethodPost && req.Method != http.MethodPut {
		w.Header().Set("Allow", "POST, PUT")
		http.Error(w, "Only POST or PUT requests allowed.", http.StatusMethodNotAllowed)
		return
	}
	if err := r.reload(); err != nil {
		http.Error(w, fmt.Sprintf("failed to reload config: %s", err), http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, "Configuration reloaded.")
}
