package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/vigilhq/vigil/internal/peers"
)

// TestOverloadAnswers429: 32 senders push 20,000-sample requests as fast
// as they can at a Vigil that admits 2 at a time; the rest wait at most
// 200ms and are refused with 429 and Retry-After, and Vigil's peak memory
// stays bounded.
func TestOverloadAnswers429(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "vigil.yml")
	writeFile(t, cfg, "receivers:\n  limits:\n    max_concurrent_requests: 2\n    max_queue_duration: 200ms\n")
	v := peers.StartVigil(t, filepath.Join(dir, "data"), "--config.file", cfg)

	const senders, samplesPerReq = 32, 20000
	var ok, throttled, other atomic.Int64
	var missingRetryAfter atomic.Int64
	deadline := time.Now().Add(8 * time.Second)
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; time.Now().Before(deadline); k++ {
				req := &prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, 0, samplesPerReq)}
				ts := time.Now().UnixMilli()
				for i := range samplesPerReq {
					req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
						Labels:  []prompb.Label{{Name: "__name__", Value: "overload_test"}, {Name: "sender", Value: strconv.Itoa(s)}, {Name: "series", Value: strconv.Itoa(i)}},
						Samples: []prompb.Sample{{Value: float64(k), Timestamp: ts}},
					})
				}
				raw, err := req.Marshal()
				if err != nil {
					t.Error(err)
					return
				}
				hreq, _ := http.NewRequest("POST", v.URL()+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, raw)))
				hreq.Header.Set("Content-Type", "application/x-protobuf")
				hreq.Header.Set("Content-Encoding", "snappy")
				hreq.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
				resp, err := http.DefaultClient.Do(hreq)
				if err != nil {
					other.Add(1)
					continue
				}
				resp.Body.Close()
				switch {
				case resp.StatusCode/100 == 2:
					ok.Add(1)
				case resp.StatusCode == http.StatusTooManyRequests:
					throttled.Add(1)
					if resp.Header.Get("Retry-After") == "" {
						missingRetryAfter.Add(1)
					}
				default:
					other.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	hwm := vmHWM(t, v.Pid())
	t.Logf("%d requests accepted (%d samples), %d refused with 429, %d other; Vigil's peak RSS %.0f MiB",
		ok.Load(), ok.Load()*samplesPerReq, throttled.Load(), other.Load(), float64(hwm)/(1<<20))
	if ok.Load() == 0 || throttled.Load() == 0 {
		t.Errorf("want both accepted and throttled requests under overload, got %d and %d", ok.Load(), throttled.Load())
	}
	if other.Load() > 0 || missingRetryAfter.Load() > 0 {
		t.Errorf("%d requests failed otherwise, %d 429s without Retry-After", other.Load(), missingRetryAfter.Load())
	}
	if m := httpGetBody(t, v.URL()+"/metrics"); !strings.Contains(m, `vigil_ingest_requests_throttled_total{receiver="remote_write"}`) {
		t.Error("vigil_ingest_requests_throttled_total is not exported")
	}
	if hwm > 1<<30 {
		t.Errorf("peak RSS %d MiB exceeds 1 GiB", hwm>>20)
	}
}

// vmHWM is a process's peak resident set size in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}
