// Command vigil-bench measures Vigil side by side with Debian's Prometheus
// and VictoriaMetrics on this machine: the same remote_write payloads are
// replayed into each, started one at a time on loopback with a fresh data
// directory, and ingest rate, CPU, memory and query latency are compared;
// then OTLP traces go through Vigil's span metrics and, if one is given,
// an OpenTelemetry Collector with the spanmetrics connector. It writes a
// Markdown report and profiles of Vigil.
//
//	go run ./bench/cmd/vigil-bench -vigil ./vigil -series 100000
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/vigilhq/vigil/bench/loadgen"
)

type options struct {
	load       loadgen.Config
	senders    int
	reps       int
	queryRuns  int
	targets    string
	vigil      string
	prometheus string
	vm         string
	dataDir    string
	out        string
	traces     tracesConfig
	otelcol    string
	keepData   bool
	profile    bool

	traceRequests, traceSpans int
}

func main() {
	o := options{load: loadgen.DefaultConfig()}
	flag.IntVar(&o.load.Series, "series", o.load.Series, "series written in each round")
	flag.IntVar(&o.load.Labels, "labels", o.load.Labels, "labels per series, __name__ included")
	flag.IntVar(&o.load.Metrics, "metrics", o.load.Metrics, "distinct metric names")
	flag.IntVar(&o.load.SeriesPerRequest, "samples-per-request", o.load.SeriesPerRequest, "samples (one per series) in each request")
	flag.IntVar(&o.load.Rounds, "rounds", o.load.Rounds, "samples per series")
	flag.DurationVar(&o.load.Interval, "interval", o.load.Interval, "time between two samples of a series")
	flag.Float64Var(&o.load.Churn, "churn", 0, "fraction of series replaced in each round after the first")
	flag.IntVar(&o.senders, "senders", 4, "concurrent remote_write senders")
	flag.IntVar(&o.reps, "reps", 3, "repetitions per target; medians are reported")
	flag.IntVar(&o.queryRuns, "query-runs", 3, "timed runs of each query (after one warm-up)")
	flag.StringVar(&o.targets, "targets", "vigil,prometheus,victoriametrics", "targets to run, comma-separated")
	flag.StringVar(&o.vigil, "vigil", "", "vigil binary (default: go build ./cmd/vigil into the data directory)")
	flag.StringVar(&o.prometheus, "prometheus", "/usr/bin/prometheus", "Prometheus binary")
	flag.StringVar(&o.vm, "victoria-metrics", "/usr/bin/victoria-metrics", "VictoriaMetrics single-node binary")
	flag.StringVar(&o.dataDir, "data-dir", "", "where targets keep their data (default: a new directory under $TMPDIR)")
	flag.StringVar(&o.out, "out", "bench/results/latest.md", "Markdown report; profiles are written beside it")
	flag.StringVar(&o.traces.telemetrygen, "telemetrygen", "", "telemetrygen binary (default: on PATH or in $(go env GOPATH)/bin); \"none\" skips OTLP traces")
	flag.IntVar(&o.traceRequests, "trace-requests", 200, "OTLP/HTTP export requests in the traces replay (0: no OTLP traces)")
	flag.IntVar(&o.traceSpans, "trace-spans-per-request", 1000, "spans per OTLP/HTTP export request")
	flag.IntVar(&o.traces.traces, "traces", 20000, "traces per telemetrygen worker")
	flag.IntVar(&o.traces.workers, "trace-workers", 2, "telemetrygen workers")
	flag.IntVar(&o.traces.childSpans, "child-spans", 1, "child spans per trace")
	flag.IntVar(&o.traces.batchSize, "trace-batch-size", 1000, "spans per OTLP export request")
	flag.StringVar(&o.otelcol, "otelcol", "", "an OpenTelemetry Collector built with the spanmetrics connector, OTLP receiver and Prometheus exporter (see bench/otelcol)")
	flag.BoolVar(&o.keepData, "keep-data", false, "keep the targets' data directories")
	flag.BoolVar(&o.profile, "profile", true, "write CPU and heap profiles of Vigil's ingest beside the report")
	serveAddr := flag.String("serve-ingest", "", "internal: serve Vigil's ingest path with /debug/pprof on this address, data in -data-dir")
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *serveAddr != "" {
		if err := serveIngest(ctx, *serveAddr, o.dataDir); err != nil {
			fmt.Fprintln(os.Stderr, "vigil-bench -serve-ingest:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "vigil-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	began := time.Now()
	// Targets run in their data directories: make paths absolute.
	for _, p := range []*string{&o.vigil, &o.prometheus, &o.vm, &o.otelcol, &o.out} {
		if *p != "" && !filepath.IsAbs(*p) && strings.ContainsRune(*p, filepath.Separator) {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return err
			}
			*p = abs
		}
	}
	if o.dataDir == "" {
		d, err := os.MkdirTemp("", "vigil-bench-")
		if err != nil {
			return err
		}
		o.dataDir = d
		if !o.keepData {
			defer os.RemoveAll(d)
		}
	}
	rep := &report{opts: o, began: began, machine: describeMachine(o.dataDir)}
	var targets []target
	for _, name := range strings.Split(o.targets, ",") {
		switch strings.TrimSpace(strings.ToLower(name)) {
		case "", "none":
		case "vigil":
			if o.vigil == "" {
				o.vigil = filepath.Join(o.dataDir, "vigil")
				slog.Info("building vigil", "out", o.vigil)
				if out, err := exec.CommandContext(ctx, "go", "build", "-o", o.vigil, "./cmd/vigil").CombinedOutput(); err != nil {
					return fmt.Errorf("go build ./cmd/vigil (run from the repository root): %w\n%s", err, out)
				}
			}
			targets = append(targets, vigilTarget(o.vigil))
		case "prometheus":
			targets = append(targets, prometheusTarget(o.prometheus))
		case "victoriametrics", "victoria-metrics", "vm":
			targets = append(targets, victoriaMetricsTarget(o.vm))
		default:
			return fmt.Errorf("unknown target %q (vigil, prometheus, victoriametrics)", name)
		}
	}
	for _, t := range targets {
		if _, err := os.Stat(t.bin); err != nil {
			return fmt.Errorf("%s: %w (run `make peers`)", t.name, err)
		}
	}
	rep.targets = targets

	o.load.Start = time.Now().Add(-time.Duration(o.load.Rounds) * o.load.Interval).Truncate(time.Second)
	slog.Info("building payload", "series", o.load.Series, "rounds", o.load.Rounds)
	p, err := loadgen.Build(o.load)
	if err != nil {
		return err
	}
	rep.payload = p
	slog.Info("payload built", "requests", p.Requests(), "samples", p.Samples, "compressed_MiB", p.CompressedBytes>>20)

	// Decode-only ceiling, median of reps.
	var dec []float64
	for range max(o.reps, 1) {
		r, err := decodeOnly(p, runtime.NumCPU())
		if err != nil {
			return err
		}
		dec = append(dec, r)
	}
	rep.decodeOnly = median(dec)
	rep.decode1 = must1(decodeOnly(p, 1))
	slog.Info("decode only", "samples_per_s", int(rep.decodeOnly), "one_core", int(rep.decode1))

	// Targets interleaved per repetition, so that load from elsewhere on a
	// shared machine spreads over all of them.
	rep.loadBefore = loadAvg()
	rep.results = map[string][]ingestRep{}
	profDir := filepath.Dir(o.out)
	for n := range o.reps {
		for _, t := range targets {
			rc := runConfig{dataDir: o.dataDir, senders: o.senders, queryRuns: o.queryRuns, keepData: o.keepData, idleSettle: 2 * time.Second}
			r, err := measure(ctx, t, p, rc, n)
			if err != nil {
				return err
			}
			rep.results[t.name] = append(rep.results[t.name], r)
		}
	}
	rep.loadAfter = loadAvg()

	// Profiles of Vigil: from the binary when it serves /debug/pprof,
	// else from the same ingest path run in this process.
	if o.vigil != "" && o.profile {
		cpuPath, heapPath := filepath.Join(profDir, "vigil-cpu.pprof"), filepath.Join(profDir, "vigil-heap.pprof")
		if err := os.MkdirAll(profDir, 0o755); err != nil {
			return err
		}
		seconds := 10
		if rs := rep.results["Vigil"]; len(rs) > 0 {
			seconds = max(1, int(rs[0].Elapsed.Seconds()))
		}
		served, err := profileBinary(ctx, vigilTarget(o.vigil), p, o, seconds, cpuPath, heapPath)
		if err != nil {
			return err
		}
		rep.profileSource = "the vigil binary's /debug/pprof during a replay of the same payload"
		if !served {
			if _, err := profileBinary(ctx, ingestTarget(), p, o, seconds, cpuPath, heapPath); err != nil {
				return err
			}
			rep.profileSource = "Vigil's ingest path (remote_write receiver, hot path, embedded TSDB with WAL, wired as `vigil serve` wires them) run in a child process `vigil-bench -serve-ingest` that serves /debug/pprof — the vigil binary serves none — during a replay of the same payload"
		}
		rep.cpuProfile, rep.heapProfile = cpuPath, heapPath
	}

	// OTLP traces: pre-encoded OTLP/HTTP requests replayed at full speed
	// (bounded by the receiver), then telemetrygen over gRPC (bounded by
	// telemetrygen's SDK), into Vigil and, when given, an otelcol.
	if o.vigil != "" && o.traceRequests > 0 {
		tc := loadgen.DefaultTracesConfig()
		tc.Requests, tc.SpansPerRequest = o.traceRequests, o.traceSpans
		tp, err := loadgen.BuildTraces(tc)
		if err != nil {
			return err
		}
		loads := []traceLoad{replayLoad(tp, o.senders)}
		rep.traceReplay = tp
		if o.traces.telemetrygen != "none" {
			if o.traces.telemetrygen == "" {
				o.traces.telemetrygen = findGoBinary("telemetrygen")
			}
			if o.traces.telemetrygen == "" {
				rep.tracesNote = "telemetrygen not found (run `make peers`): only the replay load ran."
			} else {
				loads = append(loads, telemetrygenLoad(o.traces))
			}
		}
		rep.tracesCfg = o.traces
		rep.traces = map[string][]tracesRep{}
		for n := range o.reps {
			for _, load := range loads {
				r, err := vigilTraces(ctx, o.vigil, filepath.Join(o.dataDir, fmt.Sprintf("vigil-otlp-%d", n)), load)
				if err != nil {
					return err
				}
				rep.traces["Vigil/"+load.name] = append(rep.traces["Vigil/"+load.name], r)
				if o.otelcol != "" {
					r, err := otelcolTraces(ctx, o.otelcol, filepath.Join(o.dataDir, fmt.Sprintf("otelcol-%d", n)), load)
					if err != nil {
						return err
					}
					rep.traces["otelcol/"+load.name] = append(rep.traces["otelcol/"+load.name], r)
				}
			}
		}
		for _, l := range loads {
			rep.traceLoads = append(rep.traceLoads, l.name)
		}
		if o.otelcol != "" {
			rep.otelcolVersion = otelcolVersion(o.otelcol)
		}
	}
	rep.took = time.Since(began)

	md := rep.markdown()
	fmt.Print(md)
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	slog.Info("report written", "path", o.out, "took", rep.took.Round(time.Second))
	return nil
}

// profileBinary replays p into the vigil binary and fetches its profiles if
// it serves /debug/pprof; it reports whether it did.
func profileBinary(ctx context.Context, t target, p *loadgen.Payload, o options, seconds int, cpuPath, heapPath string) (bool, error) {
	dir := filepath.Join(o.dataDir, "vigil-profile")
	_ = os.RemoveAll(dir)
	r, err := start(ctx, t, dir)
	if err != nil {
		return false, err
	}
	defer func() { r.stop(); _ = os.RemoveAll(dir) }()
	if httpGet(ctx, r.base()+"/debug/pprof/") != nil {
		return false, nil
	}
	slog.Info("profiling", "target", t.name, "seconds", seconds)
	// A CPU profile as long as a replay took before, taken while replaying.
	done := make(chan error, 1)
	go func() {
		done <- download(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", r.base(), seconds), cpuPath)
	}()
	time.Sleep(200 * time.Millisecond)
	res, err := loadgen.Replay(ctx, loadgen.SenderConfig{URL: r.writeURL(), Senders: o.senders, Retries: 5, Timeout: time.Minute}, p)
	if err != nil {
		return true, err
	}
	if err := <-done; err != nil {
		return true, err
	}
	slog.Info("replayed for the profile", "target", t.name, "samples_per_s", int(float64(p.Samples)/res.Elapsed.Seconds()))
	return true, download(ctx, r.base()+"/debug/pprof/heap?gc=1", heapPath)
}

func must1(v float64, err error) float64 {
	if err != nil {
		slog.Warn("decode on one core", "err", err)
	}
	return v
}

func findGoBinary(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, d := range filepath.SplitList(strings.TrimSpace(string(out))) {
			p := filepath.Join(d, "bin", name)
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	return ""
}
