package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vigilhq/vigil/bench/loadgen"
)

// tracesConfig is the OTLP traces load: telemetrygen's workers each send
// traces of 1+childSpans spans, unthrottled, over gRPC.
type tracesConfig struct {
	telemetrygen string
	traces       int // per worker
	workers      int
	childSpans   int
	batchSize    int
}

func (c tracesConfig) spans() int { return c.traces * c.workers * (1 + c.childSpans) }

// tracesRep is one telemetrygen run against one receiver.
type tracesRep struct {
	Load    string // "replay" or "telemetrygen"
	Sent    int    // spans sent (telemetrygen: generated; its SDK drops what its queue cannot hold)
	Spans   int    // counted by the receiver
	Elapsed time.Duration
	CPU     time.Duration
	HWM     int64
}

func (r tracesRep) spansPerSec() float64 { return float64(r.Spans) / r.Elapsed.Seconds() }

// runTelemetrygen sends the load to a gRPC endpoint and returns how long it took.
func runTelemetrygen(ctx context.Context, c tracesConfig, endpoint string) (time.Duration, error) {
	args := []string{"traces", "--otlp-insecure", "--otlp-endpoint", endpoint, "--service", "checkout",
		"--otlp-attributes", `service.version="v1"`, "--traces", strconv.Itoa(c.traces), "--workers", strconv.Itoa(c.workers),
		"--child-spans", strconv.Itoa(c.childSpans), "--batch-size", strconv.Itoa(c.batchSize), "--rate", "0"}
	cmd := exec.CommandContext(ctx, c.telemetrygen, args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("telemetrygen: %w\n%s", err, tailString(string(out), 2000))
	}
	return time.Since(start), nil
}

// counterSum reads a Prometheus text exposition and sums every sample of
// the metrics whose name starts with prefix.
func counterSum(ctx context.Context, url, prefix string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		sum += v
		found = true
	}
	if !found {
		return 0, fmt.Errorf("no %s* in %s", prefix, url)
	}
	return sum, sc.Err()
}

// waitCount polls until the counter reaches want or stops moving for 3 s.
func waitCount(ctx context.Context, url, prefix string, want float64) (float64, error) {
	var last float64
	still := time.Now()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		v, err := counterSum(ctx, url, prefix)
		if err == nil && v >= want {
			return v, nil
		}
		if v != last {
			last, still = v, time.Now()
		} else if time.Since(still) > 3*time.Second && v > 0 {
			return v, nil
		}
	}
	return last, fmt.Errorf("%s reached %g of %g", prefix, last, want)
}

// traceLoad sends spans to a receiver's gRPC or HTTP address and returns
// how many it sent and how long that took.
type traceLoad struct {
	name string
	run  func(ctx context.Context, grpcAddr, httpURL string) (sent int, elapsed time.Duration, err error)
}

func telemetrygenLoad(c tracesConfig) traceLoad {
	return traceLoad{name: "telemetrygen", run: func(ctx context.Context, grpcAddr, _ string) (int, time.Duration, error) {
		d, err := runTelemetrygen(ctx, c, grpcAddr)
		return c.spans(), d, err
	}}
}

func replayLoad(p *loadgen.TracesPayload, senders int) traceLoad {
	return traceLoad{name: "replay", run: func(ctx context.Context, _, httpURL string) (int, time.Duration, error) {
		res, err := loadgen.ReplayRounds(ctx, loadgen.SenderConfig{URL: httpURL, Senders: senders, Retries: 5, Timeout: time.Minute, Headers: loadgen.OTLPHeaders()}, [][][]byte{p.Bodies})
		if err == nil && res.Failed > 0 {
			err = fmt.Errorf("%d OTLP requests refused: %s", res.Failed, res.FirstError)
		}
		return p.Spans, res.Elapsed, err
	}}
}

// vigilTraces runs a traces load into Vigil's span metrics.
func vigilTraces(ctx context.Context, bin, dir string, load traceLoad) (tracesRep, error) {
	grpcAddr, err := freeAddr()
	if err != nil {
		return tracesRep{}, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return tracesRep{}, err
	}
	t := vigilTarget(bin)
	t.args = func(addr, dir string) []string {
		return []string{"serve", "--listen", addr, "--storage.path", dir, "--otlp.grpc.listen-address", grpcAddr, "--otlp.http.listen-address", httpAddr}
	}
	return tracesInto(ctx, t, dir, load, grpcAddr, "http://"+httpAddr+"/v1/traces", "vigil_span_metrics_spans_total")
}

// otelcolConfig is a Collector with the same job: OTLP in, the spanmetrics
// connector turning spans into RED metrics, exposed for scraping.
const otelcolConfig = `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s
connectors:
  spanmetrics:
    histogram:
      exponential: {}
    metrics_flush_interval: 15s
exporters:
  prometheus:
    endpoint: %s
service:
  telemetry:
    logs:
      level: warn
    metrics:
      level: normal
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: %s
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [spanmetrics]
    metrics:
      receivers: [spanmetrics]
      exporters: [prometheus]
`

// otelcolTraces runs the same load through an OpenTelemetry Collector.
func otelcolTraces(ctx context.Context, bin, dir string, load traceLoad) (tracesRep, error) {
	var addrs [3]string
	for i := range addrs {
		a, err := freeAddr()
		if err != nil {
			return tracesRep{}, err
		}
		addrs[i] = a
	}
	grpcAddr, httpAddr, promAddr := addrs[0], addrs[1], addrs[2]
	t := target{name: "otelcol", bin: bin, readyPath: "/metrics"}
	t.args = func(addr, dir string) []string {
		_, port, _ := strings.Cut(addr, ":")
		cfg := filepath.Join(dir, "otelcol.yml")
		_ = os.WriteFile(cfg, fmt.Appendf(nil, otelcolConfig, grpcAddr, httpAddr, promAddr, port), 0o644)
		return []string{"--config=" + cfg}
	}
	return tracesInto(ctx, t, dir, load, grpcAddr, "http://"+httpAddr+"/v1/traces", "otelcol_receiver_accepted_spans")
}

// otelcolVersion lists the modules an otelcol build was made of.
func otelcolVersion(bin string) string {
	out, err := exec.Command(bin, "components").Output()
	if err != nil {
		return "unknown"
	}
	var mods []string
	for _, l := range strings.Split(string(out), "\n") {
		if m, ok := strings.CutPrefix(strings.TrimSpace(l), "module: "); ok {
			parts := strings.Split(m, "/")
			if last := parts[len(parts)-1]; !strings.Contains(last, "provider") {
				mods = append(mods, last)
			}
		}
	}
	return "builder-made: " + strings.Join(mods, ", ")
}

func tracesInto(ctx context.Context, t target, dir string, load traceLoad, grpcAddr, httpURL, counter string) (tracesRep, error) {
	_ = os.RemoveAll(dir)
	r, err := start(ctx, t, dir)
	if err != nil {
		return tracesRep{}, err
	}
	defer func() {
		r.stop()
		_ = os.RemoveAll(dir)
	}()
	cpu0 := procCPU(r.pid())
	sent, elapsed, err := load.run(ctx, grpcAddr, httpURL)
	if err != nil {
		return tracesRep{}, fmt.Errorf("%s: %w", t.name, err)
	}
	n, err := waitCount(ctx, r.base()+"/metrics", counter, float64(sent))
	if err != nil && load.name != "telemetrygen" {
		return tracesRep{}, fmt.Errorf("%s: %w", t.name, err)
	}
	st := procSample(r.pid())
	rep := tracesRep{Load: load.name, Sent: sent, Spans: int(n), Elapsed: elapsed, CPU: st.CPU - cpu0, HWM: st.HWM}
	slog.Info("traces", "target", t.name, "load", load.name, "sent", sent, "spans", rep.Spans, "spans_per_s", int(rep.spansPerSec()), "cpu_s", rep.CPU.Seconds())
	return rep, nil
}

func tailString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
