package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	httppprof "net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigilhq/vigil/bench/loadgen"
	"github.com/vigilhq/vigil/collector"
	"github.com/vigilhq/vigil/collector/hotpath"
	"github.com/vigilhq/vigil/collector/remotewrite"
	"github.com/vigilhq/vigil/storage"
)

// decodeOnly decodes every request of p — snappy, then Vigil's
// remote_write 1.0 decoder — without storing anything, with one worker per
// core, and returns samples per second: the ceiling of ingest on this
// machine.
func decodeOnly(p *loadgen.Payload, workers int) (float64, error) {
	var bodies [][]byte
	for _, r := range p.Rounds {
		bodies = append(bodies, r...)
	}
	var next atomic.Int64
	var samples atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf collector.Buffer
			var req remotewrite.Request
			n := 0
			for {
				j := int(next.Add(1)) - 1
				if j >= len(bodies) {
					break
				}
				if err := collector.DecodeSnappy(&buf, bodies[j], 1<<30); err != nil {
					firstErr.CompareAndSwap(nil, err)
					break
				}
				if err := remotewrite.DecodeV1(buf.B, &req); err != nil {
					firstErr.CompareAndSwap(nil, err)
					break
				}
				f, _, _ := req.NumSamples()
				n += f
			}
			samples.Add(int64(n))
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, ok := firstErr.Load().(error); ok {
		return 0, fmt.Errorf("decode: %w", err)
	}
	if int(samples.Load()) != p.Samples {
		return 0, fmt.Errorf("decoded %d samples, want %d", samples.Load(), p.Samples)
	}
	return float64(p.Samples) / elapsed.Seconds(), nil
}

// serveIngest runs Vigil's ingest path — remote_write receiver, hot path,
// embedded TSDB with WAL, wired as `vigil serve` wires them — behind an
// HTTP server on addr that also serves /debug/pprof and /-/ready. The
// harness starts it as a child process (vigil-bench -serve-ingest) to
// profile Vigil's ingest when the vigil binary serves no /debug/pprof: a
// process of its own, so the profiles hold neither the payload nor the
// load generator.
func serveIngest(ctx context.Context, addr, dir string) error {
	reg := prometheus.NewRegistry()
	cfg := storage.DefaultConfig()
	cfg.Path = dir
	st, err := storage.Open(cfg, nil, reg)
	if err != nil {
		return fmt.Errorf("open storage: %w", err)
	}
	defer st.Close()
	pipe, err := hotpath.New(hotpath.DefaultConfig(), st, nil, reg)
	if err != nil {
		return err
	}
	rcv, err := remotewrite.New(remotewrite.DefaultConfig(), pipe, st.Metadata(), collector.NewMetrics(reg), nil)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("POST /api/v1/write", rcv)
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ready") })
	mux.HandleFunc("/debug/pprof/", httppprof.Index)
	mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
	srv := &http.Server{Addr: addr, Handler: mux}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ingestTarget is serveIngest run as a child of the harness.
func ingestTarget() target {
	self, _ := os.Executable()
	return target{
		name: "Vigil (ingest path in vigil-bench)", bin: self,
		args:      func(addr, dir string) []string { return []string{"-serve-ingest", addr, "-data-dir", dir} },
		writePath: "/api/v1/write", readyPath: "/-/ready",
	}
}

func download(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.ReadFrom(resp.Body)
	return err
}
