package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/vigilhq/vigil/deploy"
	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/config"
	"github.com/vigilhq/vigil/internal/plain"
)

// simService is a simulated service version that sends its server spans
// (and error logs) over OTLP/HTTP with the OpenTelemetry Go SDK.
type simService struct {
	Service, Version string
	RPS              float64       // requests per second
	ErrorRatio       float64       // share of requests that fail
	Latency          time.Duration // median latency (log-normal, sigma 0.3)
	ErrorMessage     string        // status message and error log line of a failure
	Seed             uint64
	Token            string // a write token, when Vigil authenticates (auth.tokens)
	// ErrorCall, when set, names a client span under each failing request
	// that fails too (the call that broke it): two error spans of one trace.
	ErrorCall string
}

// run sends traffic to the OTLP/HTTP endpoint (host:port) until ctx ends.
func (s simService) run(ctx context.Context, endpoint string) error {
	res := resource.NewSchemaless(
		attribute.String("service.name", s.Service),
		attribute.String("service.namespace", "shop"),
		attribute.String("service.version", s.Version),
		attribute.String("deployment.environment.name", "production"),
		attribute.String("service.instance.id", s.Service+"-"+s.Version),
	)
	bg := context.Background()
	var headers map[string]string
	if s.Token != "" {
		headers = map[string]string{"Authorization": "Bearer " + s.Token}
	}
	texp, err := otlptracehttp.New(bg, otlptracehttp.WithEndpoint(endpoint), otlptracehttp.WithInsecure(), otlptracehttp.WithHeaders(headers))
	if err != nil {
		return fmt.Errorf("trace exporter: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithBatcher(texp, sdktrace.WithBatchTimeout(500*time.Millisecond)))
	lexp, err := otlploghttp.New(bg, otlploghttp.WithEndpoint(endpoint), otlploghttp.WithInsecure(), otlploghttp.WithHeaders(headers))
	if err != nil {
		return fmt.Errorf("log exporter: %w", err)
	}
	lp := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(sdklog.NewBatchProcessor(lexp, sdklog.WithExportInterval(500*time.Millisecond))))
	defer func() {
		sctx, cancel := context.WithTimeout(bg, 5*time.Second)
		defer cancel()
		_ = tp.Shutdown(sctx)
		_ = lp.Shutdown(sctx)
	}()
	tracer, logger := tp.Tracer("vigil-demo"), lp.Logger("vigil-demo")
	rng := rand.New(rand.NewPCG(s.Seed, 42))
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	perTick := s.RPS / 10
	var carry float64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		carry += perTick
		for ; carry >= 1; carry-- {
			end := time.Now()
			d := time.Duration(float64(s.Latency) * math.Exp(0.3*rng.NormFloat64()))
			sctx, span := tracer.Start(bg, "POST /orders", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(end.Add(-d)))
			if rng.Float64() < s.ErrorRatio {
				if s.ErrorCall != "" {
					_, call := tracer.Start(sctx, s.ErrorCall, trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(end.Add(-d/2)))
					call.SetStatus(codes.Error, s.ErrorMessage)
					call.End(trace.WithTimestamp(end))
				}
				span.SetStatus(codes.Error, s.ErrorMessage)
				var r otellog.Record
				r.SetTimestamp(end)
				r.SetSeverity(otellog.SeverityError)
				r.SetSeverityText("ERROR")
				r.SetBody(attribute.StringValue(s.ErrorMessage))
				_ = r
				logger.Emit(trace.ContextWithSpan(bg, span), r)
			}
			span.End(trace.WithTimestamp(end))
		}
	}
}

// demoConfig is the configuration the demo server runs with: derived
// metrics flushed every second and a 2 s verdict step, so that a verdict
// comes within a minute.
const demoConfig = `
span_metrics:
  flush_interval: 1s
  service_graph:
    wait: 2s
log_metrics:
  flush_interval: 1s
deploy:
  step: 2s
  rate_window: 4s
  window: 45s
`

type demoCommand struct {
	stdout, stderr io.Writer
	keep           bool
}

func newDemoCommand(app *kingpin.Application, stdout, stderr io.Writer) *demoCommand {
	c := &demoCommand{stdout: stdout, stderr: stderr}
	cmd := app.Command("demo", "Start Vigil with two simulated services, ship a healthy and a bad version, and print each verdict as soon as it is final (about a minute).")
	cmd.Flag("keep-running", "Keep the server and the simulated traffic running after the verdicts (Ctrl-C to stop).").BoolVar(&c.keep)
	return c
}

func (*demoCommand) name() string { return "demo" }

func (c *demoCommand) run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "vigil-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	addr, err := freeLoopback()
	if err != nil {
		return err
	}
	otlpAddr, err := freeLoopback()
	if err != nil {
		return err
	}
	cfgPath := dir + "/vigil.yml"
	if err := os.WriteFile(cfgPath, []byte(demoConfig), 0o644); err != nil {
		return err
	}
	cfg, err := config.LoadFile(cfgPath)
	if err != nil {
		return err
	}
	cfg.Web.ListenAddress = addr
	cfg.Storage.Path = dir + "/data"
	cfg.Receivers.OTLP.GRPC.ListenAddress = ""
	cfg.Receivers.OTLP.HTTP.ListenAddress = otlpAddr
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	srvCtx, srvStop := context.WithCancel(ctx)
	defer srvStop()
	srvDone := make(chan error, 1)
	go func() {
		srvDone <- serve(srvCtx, cfg, logger, map[string]string{}, func() (config.Config, error) { return cfg, nil })
	}()
	base := "http://" + addr
	if err := waitReady(ctx, base); err != nil {
		return exitWith(exitInternal, err)
	}
	fmt.Fprintf(c.stdout, "Vigil is running on %s (OTLP/HTTP on %s): open it in a browser to follow the verdicts.\n", base, otlpAddr)
	err = runDemo(ctx, c.stdout, base, otlpAddr, 15*time.Second)
	if err == nil && c.keep {
		fmt.Fprintln(c.stdout, "\nStill running: try `vigil query --server "+base+" 'sum by (version) (rate(traces_span_metrics_calls_total[1m]))'`. Ctrl-C to stop.")
		<-ctx.Done()
	}
	srvStop()
	if serr := <-srvDone; serr != nil && err == nil {
		err = serr
	}
	return err
}

// runDemo runs the scenario against a Vigil at base: two services on v1,
// then checkout v2 (healthy) and payments v2 (more errors, slower),
// recorded as deployments and verified; it prints both verdicts.
func runDemo(ctx context.Context, w io.Writer, base, otlp string, warmup time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	start := func(s simService) {
		wg.Go(func() {
			if err := s.run(ctx, otlp); err != nil {
				errs <- err
			}
		})
	}
	defer wg.Wait()
	defer cancel()
	start(simService{Service: "checkout", Version: "v1", RPS: 40, ErrorRatio: 0.005, Latency: 40 * time.Millisecond, ErrorMessage: "card declined", Seed: 1})
	start(simService{Service: "payments", Version: "v1", RPS: 40, ErrorRatio: 0.01, Latency: 60 * time.Millisecond, ErrorMessage: "card declined", Seed: 2})
	fmt.Fprintf(w, "Simulating checkout v1 and payments v1 for %s...\n", warmup)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-errs:
		return err
	case <-time.After(warmup):
	}
	client := deploy.Client{URL: base}
	for _, svc := range []string{"checkout", "payments"} {
		e := deploy.Event{Service: svc, Namespace: "shop", Environment: "production", Version: "v2", PreviousVersion: "v1", Strategy: deploy.StrategyCanary, Pipeline: "demo"}
		if _, _, err := client.Record(ctx, e); err != nil {
			return fmt.Errorf("record deployment of %s: %w", svc, err)
		}
	}
	start(simService{Service: "checkout", Version: "v2", RPS: 40, ErrorRatio: 0.005, Latency: 40 * time.Millisecond, ErrorMessage: "card declined", Seed: 3})
	start(simService{Service: "payments", Version: "v2", RPS: 40, ErrorRatio: 0.08, Latency: 150 * time.Millisecond, ErrorMessage: "ledger write timed out after 100ms", Seed: 4})
	fmt.Fprintln(w, "Shipped checkout v2 (healthy) and payments v2 (more errors, slower) as canaries; verifying both...")

	return streamVerdicts(ctx, w, base, []string{"checkout", "payments"}, "v2")
}

// streamVerdicts verifies each service's version at once and prints each
// verdict as soon as it is final — the first decided first — with a
// progress line while it waits: in place on a terminal, every few seconds
// otherwise.
func streamVerdicts(ctx context.Context, w io.Writer, base string, services []string, version string) error {
	term := detectTerminal(w)
	type result struct {
		v   *verdict.Verdict
		err error
	}
	done := make(chan result, len(services))
	var mu sync.Mutex
	latest := map[string]*verdict.Verdict{}
	var pw sync.WaitGroup
	defer pw.Wait()
	for _, svc := range services {
		pw.Go(func() {
			v, err := pollVerdict(ctx, base, svc, version, 2*time.Minute, func(v *verdict.Verdict) {
				mu.Lock()
				latest[svc] = v
				mu.Unlock()
			})
			done <- result{v, err}
		})
	}
	every := 5 * time.Second
	if term.tty {
		every = time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	clearLine := func() {
		if term.tty {
			fmt.Fprint(w, "\r\033[K")
		}
	}
	for left := len(services); left > 0; {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case r := <-done:
			left--
			clearLine()
			if r.err != nil {
				return r.err
			}
			mu.Lock()
			delete(latest, r.v.Service)
			mu.Unlock()
			fmt.Fprintln(w)
			renderVerdict(w, r.v, !r.v.Final)
		case <-tick.C:
			mu.Lock()
			var lines []string
			for _, svc := range services {
				if v := latest[svc]; v != nil {
					lines = append(lines, plain.Progress(v))
				}
			}
			mu.Unlock()
			if len(lines) == 0 {
				continue
			}
			line := "waiting: " + strings.Join(lines, " | ")
			if term.tty {
				fmt.Fprintf(w, "\r\033[K%s", truncate(line, max(term.width-1, 20)))
			} else {
				fmt.Fprintln(w, line)
			}
		}
	}
	return nil
}

// pollVerdict starts a verification and polls it until it is final (or
// limit passes), telling progress about each verdict on the way.
func pollVerdict(ctx context.Context, base, service, version string, limit time.Duration, progress func(*verdict.Verdict)) (*verdict.Verdict, error) {
	client := deploy.Client{URL: base}
	deadline := time.Now().Add(limit)
	st, err := client.Verify(ctx, deploy.VerifyRequest{Service: service, Version: version})
	for {
		if err != nil {
			return nil, fmt.Errorf("verify %s: %w", service, err)
		}
		if st.Verdict != nil && progress != nil {
			progress(st.Verdict)
		}
		if st.Final || time.Now().After(deadline) {
			if st.Verdict == nil {
				return nil, fmt.Errorf("verify %s: no verdict within %s", service, limit)
			}
			return st.Verdict, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
		st, err = client.Status(ctx, st.ID)
	}
}

func freeLoopback() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func waitReady(ctx context.Context, base string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("the demo server did not become ready in 30s")
}
