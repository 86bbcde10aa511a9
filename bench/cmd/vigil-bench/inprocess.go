package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
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

// profileInProcess runs Vigil's ingest path — remote_write receiver, hot
// path, embedded TSDB with WAL, as `vigil serve` wires them — in this
// process behind a loopback HTTP server, replays p into it and writes a
// CPU profile of the replay and a heap profile after it. The profile also
// shows the load generator's own work (net/http client, loadgen.*), which
// is told apart by function name. It is used when the vigil binary serves
// no /debug/pprof.
func profileInProcess(ctx context.Context, p *loadgen.Payload, dir string, senders int, cpuPath, heapPath string) (float64, error) {
	reg := prometheus.NewRegistry()
	cfg := storage.DefaultConfig()
	cfg.Path = dir
	st, err := storage.Open(cfg, nil, reg)
	if err != nil {
		return 0, fmt.Errorf("open storage: %w", err)
	}
	defer func() {
		_ = st.Close()
		_ = os.RemoveAll(dir)
	}()
	pipe, err := hotpath.New(hotpath.DefaultConfig(), st, nil, reg)
	if err != nil {
		return 0, err
	}
	rcv, err := remotewrite.New(remotewrite.DefaultConfig(), pipe, st.Metadata(), collector.NewMetrics(reg), nil)
	if err != nil {
		return 0, err
	}
	mux := http.NewServeMux()
	mux.Handle("POST /api/v1/write", rcv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	f, err := os.Create(cpuPath)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return 0, err
	}
	res, err := loadgen.Replay(ctx, loadgen.SenderConfig{URL: "http://" + ln.Addr().String() + "/api/v1/write", Senders: senders, Retries: 5, Timeout: time.Minute}, p)
	pprof.StopCPUProfile()
	if err != nil {
		return 0, err
	}
	if res.Failed > 0 {
		return 0, fmt.Errorf("in-process Vigil refused %d requests: %s", res.Failed, res.FirstError)
	}
	runtime.GC()
	h, err := os.Create(heapPath)
	if err != nil {
		return 0, err
	}
	defer h.Close()
	if err := pprof.Lookup("heap").WriteTo(h, 0); err != nil {
		return 0, err
	}
	return float64(p.Samples) / res.Elapsed.Seconds(), nil
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
