package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/vigilhq/vigil/collector"
	"github.com/vigilhq/vigil/collector/derived"
	"github.com/vigilhq/vigil/collector/evidence"
	"github.com/vigilhq/vigil/collector/hotpath"
	"github.com/vigilhq/vigil/collector/logmetrics"
	"github.com/vigilhq/vigil/collector/loki"
	"github.com/vigilhq/vigil/collector/otlp"
	"github.com/vigilhq/vigil/collector/remotewrite"
	"github.com/vigilhq/vigil/collector/spanmetrics"
	"github.com/vigilhq/vigil/deploy"
	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/internal/config"
	"github.com/vigilhq/vigil/internal/connlimit"
	"github.com/vigilhq/vigil/internal/semconv"
	"github.com/vigilhq/vigil/query"
	"github.com/vigilhq/vigil/storage"
)

type serveCommand struct {
	stderr io.Writer
	cmd    *kingpin.CmdClause

	configFile  string
	listen      string
	storagePath string
	retention   model.Duration
	logConfig   promslog.Config

	otlpGRPC  string
	otlpHTTP  string
	webConfig string
	replica   string

	set struct{ listen, storagePath, retention, otlpGRPC, otlpHTTP, webConfig, replica bool }
}

func newServeCommand(app *kingpin.Application, _, stderr io.Writer) *serveCommand {
	c := &serveCommand{stderr: stderr}
	c.cmd = app.Command("serve", "Run the Vigil server: ingest, storage, PromQL API.")
	c.cmd.Flag("config.file", "Vigil configuration file (YAML). Optional: without it Vigil runs on its defaults.").
		PlaceHolder("vigil.yml").StringVar(&c.configFile)
	c.cmd.Flag("config", "Alias of --config.file.").Hidden().StringVar(&c.configFile)
	c.cmd.Flag("listen", "Address the HTTP server listens on (API, remote_write, /metrics). Overrides web.listen_address.").
		PlaceHolder("127.0.0.1:9400").IsSetByUser(&c.set.listen).StringVar(&c.listen)
	c.cmd.Flag("web.listen-address", "Alias of --listen.").Hidden().IsSetByUser(&c.set.listen).StringVar(&c.listen)
	c.cmd.Flag("storage.path", "Data directory. Overrides storage.path.").
		PlaceHolder("data").IsSetByUser(&c.set.storagePath).StringVar(&c.storagePath)
	c.cmd.Flag("retention", "How long to keep samples, e.g. 15d. Overrides storage.retention.").
		PlaceHolder("15d").IsSetByUser(&c.set.retention).SetValue(&c.retention)
	c.cmd.Flag("storage.tsdb.retention.time", "Alias of --retention.").Hidden().IsSetByUser(&c.set.retention).SetValue(&c.retention)
	c.cmd.Flag("otlp.grpc.listen-address", "Address OTLP/gRPC is served on; empty disables it. Overrides receivers.otlp.grpc.listen_address.").
		PlaceHolder("127.0.0.1:4317").IsSetByUser(&c.set.otlpGRPC).StringVar(&c.otlpGRPC)
	c.cmd.Flag("otlp.http.listen-address", "Address OTLP/HTTP is served on; empty disables it (OTLP/HTTP stays available under /otlp/v1 on --listen). Overrides receivers.otlp.http.listen_address.").
		PlaceHolder("127.0.0.1:4318").IsSetByUser(&c.set.otlpHTTP).StringVar(&c.otlpHTTP)
	c.cmd.Flag("web.config.file", "Prometheus web configuration file: TLS, basic_auth_users, http_server_config. Overrides web.config_file.").
		PlaceHolder("web.yml").IsSetByUser(&c.set.webConfig).StringVar(&c.webConfig)
	c.cmd.Flag("collector.replica", "Name of this collector replica: the collector label of every series it derives, when several Vigils forward to one store. Overrides collector.replica; default $POD_NAME.").
		PlaceHolder("NAME").IsSetByUser(&c.set.replica).StringVar(&c.replica)
	promslogflag.AddFlags(app, &c.logConfig)
	return c
}

func (*serveCommand) name() string { return "serve" }

// config merges defaults, the config file and the flags given on the command line.
func (c *serveCommand) config() (config.Config, error) {
	cfg := config.DefaultConfig()
	if c.configFile != "" {
		var err error
		if cfg, err = config.LoadFile(c.configFile); err != nil {
			return cfg, err
		}
	}
	if c.set.listen {
		cfg.Web.ListenAddress = c.listen
	}
	if c.set.storagePath {
		cfg.Storage.Path = c.storagePath
	}
	if c.set.retention {
		cfg.Storage.Retention = c.retention
	}
	if c.set.otlpGRPC {
		cfg.Receivers.OTLP.GRPC.ListenAddress = c.otlpGRPC
	}
	if c.set.otlpHTTP {
		cfg.Receivers.OTLP.HTTP.ListenAddress = c.otlpHTTP
	}
	if c.set.webConfig {
		cfg.Web.ConfigFile = c.webConfig
	}
	if c.set.replica {
		cfg.Collector.Replica = c.replica
	}
	cfg.Collector.DefaultReplica()
	return cfg, cfg.Validate()
}

func (c *serveCommand) flagMap() map[string]string {
	m := map[string]string{}
	for _, f := range c.cmd.Model().Flags {
		m[f.Name] = f.Value.String()
	}
	return m
}

func (c *serveCommand) run() error {
	logger := promslog.New(&c.logConfig)
	cfg, err := c.config()
	if err != nil {
		return exitWith(exitFailure, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serve(ctx, cfg, logger, c.flagMap(), c.config)
}

// serve runs Vigil until ctx is cancelled, then shuts down cleanly: it stops
// accepting requests, lets those in flight finish (up to
// web.shutdown_timeout) and closes storage, which flushes the WAL.
//
// load re-reads the configuration for a reload (SIGHUP, POST /-/reload).
func serve(ctx context.Context, cfg config.Config, logger *slog.Logger, flags map[string]string, load func() (config.Config, error)) error {
	logger.Info("Starting Vigil", "version", version.Info(), "build_context", version.BuildContext())
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector("vigil"),
	)

	// Credentials and TLS come first: without them nothing is served.
	sec, err := newSecurity(cfg, logger, reg)
	if err != nil {
		return err
	}
	if err := sec.checkExposure(cfg, logger); err != nil {
		return err
	}
	if sec.authn.Enabled() {
		logger.Info("Authentication is on", "credentials", strings.Join(sec.authn.Summary(), ", "))
	}

	// The listener comes up first so that /-/healthy answers while the WAL
	// replays; everything else answers 503 until storage is open.
	// Every route is registered with the scope it needs (auth.Mux).
	var app atomic.Pointer[auth.Mux]
	instrument := newHTTPInstrumentation(reg)
	root := auth.NewMux(sec.authn, instrument)
	root.Handle("GET /metrics", auth.ScopeRead, promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		EnableOpenMetrics: true, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelError),
	})))
	root.HandleFunc("/-/healthy", auth.ScopeNone, func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "Vigil is Healthy.")
	})
	root.HandleFunc("/-/ready", auth.ScopeNone, func(w http.ResponseWriter, _ *http.Request) {
		if app.Load() == nil {
			http.Error(w, "Service Unavailable: Vigil is starting (replaying the WAL).", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "Vigil is Ready.")
	})
	root.Delegate(app.Load, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "Service Unavailable: Vigil is starting (replaying the WAL).", http.StatusServiceUnavailable)
	}))

	ln, err := net.Listen("tcp", cfg.Web.ListenAddress)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Web.ListenAddress, err)
	}
	// The response headers and rate_limit of the web config apply to
	// everything but the probes, which must answer whatever the load.
	handler := probesFirst(root, sec.headers.Wrap(root))
	if cfg.Web.MaxConnections > 0 {
		limited := connlimit.Listen(ln, connlimit.Config{
			Max: cfg.Web.MaxConnections, Reserve: probeReserve, ProbeTimeout: 5 * time.Second, ProbePaths: probePaths,
		}, reg)
		ln, handler = limited, limited.Guard(handler)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Duration(cfg.Web.ReadTimeout),
		IdleTimeout:       5 * time.Minute,
		ConnContext:       connlimit.ConnContext,
		ErrorLog:          slog.NewLogLogger(logger.With("component", "web").Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	if sec.tls != nil {
		if !sec.tls.HTTP2() {
			srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
		}
		srv.TLSConfig = sec.tls.ServerConfig("h2", "http/1.1")
		go func() { serveErr <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { serveErr <- srv.Serve(ln) }()
	}
	logger.Info("Listening", "address", ln.Addr().String(), "tls", sec.tls != nil)

	shutdownHTTP := func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.Web.ShutdownTimeout))
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			logger.Warn("HTTP server did not drain in time", "timeout", cfg.Web.ShutdownTimeout, "err", err)
		}
	}

	// Everything started from here is stopped in reverse order on the way
	// out, after the listeners have stopped taking requests.
	var stack []func()
	stopAll := func() {
		for i := len(stack) - 1; i >= 0; i-- {
			stack[i]()
		}
	}
	fail := func(err error) error {
		shutdownHTTP()
		stopAll()
		return err
	}

	store, err := storage.Open(cfg.Storage, logger, reg)
	if err != nil {
		return fail(err)
	}
	stack = append(stack, func() {
		if err := store.Close(); err != nil {
			logger.Error("Closing storage failed", "err", err)
			return
		}
		logger.Info("Storage closed")
	})

	forwarder := storage.NewForwarder(store, time.Duration(cfg.Storage.RemoteFlushDeadline), logger, reg)
	if err := forwarder.ApplyConfig(cfg.ForwardConfig()); err != nil {
		_ = forwarder.Close()
		return fail(err)
	}
	// Closed after everything that writes has stopped, before storage.
	stack = append(stack, func() {
		if err := forwarder.Close(); err != nil {
			logger.Warn("Closing remote_write forwarding failed", "err", err)
		}
	})

	engine, err := query.NewEngine(cfg.Query, cfg.Storage.Path, logger, reg)
	if err != nil {
		return fail(err)
	}
	stack = append(stack, func() {
		if err := engine.Close(); err != nil {
			logger.Warn("Closing the query engine failed", "err", err)
		}
	})
	api, err := query.NewAPI(query.APIConfig{
		Engine:    engine,
		Storage:   queryStorage{Queryable: forwarder.Queryable(store), ExemplarQueryable: store},
		Metadata:  store.Metadata(),
		TSDB:      store,
		Build:     buildInfo(),
		Flags:     flags,
		Config:    cfg.String,
		Retention: retentionString(cfg.Storage),
		Logger:    logger.With("component", "api"),
	})
	if err != nil {
		return fail(err)
	}

	// The hot path sits between every receiver and storage; span and log
	// metrics write through it too.
	// Derived series carry the collector replica's name when it has one.
	replica := cfg.Collector.Replica
	if replica != "" {
		logger.Info("Running as a collector replica: derived series carry its name", "collector", replica)
	}
	ingestCfg := cfg.Ingest
	ingestCfg.StreamAggregation = cfg.StreamAggregation
	ingestCfg.Replica = replica
	pipeline, err := hotpath.New(ingestCfg, store, logger.With("component", "hotpath"), reg)
	if err != nil {
		return fail(err)
	}
	spans, err := spanmetrics.New(cfg.SpanMetrics, derived.NewWriter(pipeline, replica), logger.With("component", "span_metrics"), reg)
	if err != nil {
		return fail(err)
	}
	logs, err := logmetrics.New(cfg.LogMetrics, derived.NewWriter(pipeline, replica), logger.With("component", "log_metrics"), reg)
	if err != nil {
		return fail(err)
	}
	runs := []func(context.Context){pipeline.Run, spans.Run, logs.Run}
	if fc := cfg.Collector.EvidenceForward.ForwardConfig; fc.URL != "" {
		out := evidence.NewOutbox(fc.MaxQueue, reg)
		spans.ErrorTraces().Forward(out)
		logs.ErrorLogs().Forward(out)
		fwd, err := evidence.NewForwarder(fc, replica, out, logger.With("component", "evidence_forward"), reg)
		if err != nil {
			return fail(fmt.Errorf("collector.evidence_forward: %w", err))
		}
		runs = append(runs, fwd.Run)
		logger.Info("Forwarding error logs and traces as evidence", "url", fc.URL)
	}
	// Background work flushes once more when it is stopped, before storage
	// closes (and the evidence forwarder sends what is left), after the
	// receivers have stopped.
	bgCtx, bgCancel := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	for _, run := range runs {
		bg.Add(1)
		go func() {
			defer bg.Done()
			run(bgCtx)
		}()
	}
	stack = append(stack, func() {
		bgCancel()
		bg.Wait()
		logger.Info("Flushed derived metrics")
		// A replica being scaled in hands over what it derived since its
		// last flush: forwarding closes only once it has read the WAL to
		// its end (within storage.remote_flush_deadline).
		if forwarder.Forwarding() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.Storage.RemoteFlushDeadline))
			marker := labels.FromStrings(model.MetricNameLabel, "vigil_shutdown_timestamp_seconds")
			if replica != "" {
				marker = labels.FromStrings(model.MetricNameLabel, "vigil_shutdown_timestamp_seconds", semconv.LabelCollector, replica)
			}
			if err := forwarder.Drain(ctx, store, marker); err != nil {
				logger.Warn("Forwarding may not have sent the last samples", "err", err)
			}
			cancel()
		}
	})

	ingestMetrics := collector.NewMetrics(reg)
	rw, err := remotewrite.New(cfg.Receivers.RemoteWrite, pipeline, store.Metadata(), ingestMetrics, logger.With("component", "remote_write"))
	if err != nil {
		return fail(err)
	}
	tracesOut, logsOut, closeForwarders, err := startOTLPForwarders(cfg, spans, logs, logger, reg)
	if err != nil {
		return fail(err)
	}
	stack = append(stack, closeForwarders) // after the OTLP servers stop
	otlpRcv, err := otlp.New(cfg.Receivers.OTLP, otlp.Consumers{Metrics: pipeline, Metadata: store.Metadata(), Traces: tracesOut, Logs: logsOut}, ingestMetrics, logger.With("component", "otlp"))
	if err != nil {
		return fail(err)
	}
	lokiRcv, err := loki.New(cfg.Receivers.Loki, logs, ingestMetrics, logger.With("component", "loki"))
	if err != nil {
		return fail(err)
	}
	limiter, err := collector.NewLimiter(cfg.Receivers.Limits, reg)
	if err != nil {
		return fail(err)
	}
	otlpRcv.SetLimiter(limiter) // each receiver reads a body, then takes a slot
	rw.SetLimiter(limiter)
	lokiRcv.SetLimiter(limiter)
	lokiRcv.SetLimits(pipeline.IngestLimits())
	otlpSec := otlp.Security{
		HTTP: func(h http.Handler) http.Handler { return sec.headers.Wrap(sec.authn.Require(auth.ScopeWrite, h)) },
		GRPC: sec.authn.UnaryServerInterceptor(auth.ScopeWrite),
	}
	if sec.tls != nil {
		otlpSec.TLS = sec.tls.ServerConfig
	}
	otlpRcv.SetSecurity(otlpSec)
	otlpServers, err := otlpRcv.Start()
	if err != nil {
		return fail(err)
	}
	stack = append(stack, func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.Web.ShutdownTimeout))
		defer cancel()
		otlpServers.Stop(sctx)
	})

	rulesMgr, err := newAlerting(cfg, store, engine, logger, reg)
	if err != nil {
		return fail(err)
	}
	rulesMgr.Start()
	stack = append(stack, func() {
		rulesMgr.Stop()
		logger.Info("Rule evaluation and notifications stopped")
	})
	reload, err := newReloader(cfg, load, func(c config.Config) error {
		if err := sec.reload(c); err != nil {
			return err
		}
		if err := rulesMgr.ApplyConfig(c.AlertingConfig()); err != nil {
			return err
		}
		return forwarder.ApplyConfig(c.ForwardConfig())
	},
		logger.With("component", "reload"), reg)
	if err != nil {
		return fail(err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	mux := auth.NewMux(sec.authn, instrument)
	// Profiles, as Prometheus serves them (go tool pprof http://host:9400/debug/pprof/profile).
	mux.HandleFunc("/debug/pprof/", auth.ScopeAdmin, pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", auth.ScopeAdmin, pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", auth.ScopeAdmin, pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", auth.ScopeAdmin, pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", auth.ScopeAdmin, pprof.Trace)
	api.Register(mux)
	rulesMgr.Register(mux)
	mux.Handle("/-/reload", auth.ScopeAdmin, reload)
	mux.Handle("POST /api/v1/write", auth.ScopeWrite, rw)
	mux.Handle("/otlp/v1/", auth.ScopeWrite, otlpRcv.HTTPHandler("/otlp/v1"))
	mux.Handle("/api/v1/otlp/v1/", auth.ScopeWrite, otlpRcv.HTTPHandler("/api/v1/otlp/v1"))
	mux.Handle("/loki/api/v1/push", auth.ScopeWrite, lokiRcv)
	mux.Handle("GET /api/v1/logs/recent", auth.ScopeRead, logs.ErrorLogs().Handler())
	mux.Handle("GET /api/v1/traces/recent", auth.ScopeRead, spans.ErrorTraces().Handler())
	// Collector replicas forward their evidence here: write scope, and only
	// the writers of ingest.accept_derived_series_from.
	mux.Handle("POST /api/v1/evidence", auth.ScopeWrite, evidence.NewReceiver(pipeline.MayWriteDerived, time.Duration(cfg.Receivers.Limits.BodyReadTimeout), logger.With("component", "evidence"), reg, spans.ErrorTraces(), logs.ErrorLogs()))
	hook, stopDeploy, err := startDeploy(cfg, store, engine, spans, logs, mux, sec.authenticated(), logger, reg)
	if err != nil {
		return fail(err)
	}
	stack = append(stack, stopDeploy)
	stopUI, err := startUI(cfg, hook, deploy.PromQL{Engine: engine, Queryable: queryStorage{Queryable: forwarder.Queryable(store), ExemplarQueryable: store}},
		uiListeners(ln.Addr(), otlpServers, sec.tls != nil), reg, mux, logger)
	if err != nil {
		return fail(err)
	}
	stack = append(stack, stopUI)
	app.Store(mux)
	if testHookRoutes != nil {
		testHookRoutes(append(root.Routes(), mux.Routes()...))
	}
	logger.Info("Vigil is ready to receive and answer queries")

	var runErr error
wait:
	for {
		select {
		case <-hup:
			_ = reload.reload() // logged; the old configuration keeps running
		case <-ctx.Done():
			logger.Info("Received shutdown signal, shutting down gracefully")
			break wait
		case err := <-serveErr:
			runErr = fmt.Errorf("http server: %w", err)
			break wait
		case err := <-otlpServers.Err():
			runErr = fmt.Errorf("otlp server: %w", err)
			break wait
		}
	}
	shutdownHTTP()
	stopAll()
	logger.Info("See you next time!")
	return runErr
}

func buildInfo() query.BuildInfo {
	return query.BuildInfo{
		Version:   version.Version,
		Revision:  version.GetRevision(),
		Branch:    version.Branch,
		BuildUser: version.BuildUser,
		BuildDate: version.BuildDate,
		GoVersion: version.GoVersion,
	}
}

func retentionString(c storage.Config) string {
	var parts []string
	if c.Retention > 0 {
		parts = append(parts, c.Retention.String())
	}
	if c.RetentionSize > 0 {
		parts = append(parts, c.RetentionSize.String())
	}
	return strings.Join(parts, " or ")
}

// testHookRoutes, when set (by tests), receives every route once the
// server is ready.
var testHookRoutes func([]auth.Route)

// The probes, served to everyone and even when web.max_connections is reached.
var probePaths = []string{"/-/healthy", "/-/ready"}

// probeReserve is how many connections beyond web.max_connections are
// accepted for the probes only.
const probeReserve = 16

// probesFirst sends the probes to probes and everything else to next.
func probesFirst(probes, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slices.Contains(probePaths, r.URL.Path) {
			probes.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// newHTTPInstrumentation returns the wrapper that gives each route request
// count and latency metrics labelled by path, like Prometheus's
// prometheus_http_* metrics.
func newHTTPInstrumentation(reg prometheus.Registerer) func(pattern string, h http.Handler) http.Handler {
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:                            "vigil_http_request_duration_seconds",
		Help:                            "Latency of HTTP requests, by handler.",
		Buckets:                         []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		NativeHistogramBucketFactor:     1.1,
		NativeHistogramMaxBucketNumber:  100,
		NativeHistogramMinResetDuration: time.Hour,
	}, []string{"handler"})
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_http_requests_total",
		Help: "HTTP requests, by handler and status code.",
	}, []string{"handler", "code"})
	reg.MustRegister(duration, requests)
	return func(pattern string, h http.Handler) http.Handler {
		path := pattern
		if _, p, ok := strings.Cut(pattern, " "); ok {
			path = p
		}
		labels := prometheus.Labels{"handler": path}
		h = promhttp.InstrumentHandlerCounter(requests.MustCurryWith(labels), h)
		return promhttp.InstrumentHandlerDuration(duration.MustCurryWith(labels), h)
	}
}
