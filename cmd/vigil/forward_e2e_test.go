package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/prompb"

	"github.com/vigilhq/vigil/internal/peers"
)

// TestForwardingSurvivesOutage: Vigil forwards by remote_write to Debian's
// VictoriaMetrics under a steady write load; VictoriaMetrics is stopped for
// a while and started again; every sample Vigil acknowledged arrives, and
// Vigil's heap stays flat while the samples wait in its WAL.
func TestForwardingSurvivesOutage(t *testing.T) {
	vmAddr := peers.FreeAddr(t)
	vmDir := t.TempDir()
	vm := peers.StartVictoriaMetrics(t, vmAddr, vmDir)

	dir := t.TempDir()
	cfg := filepath.Join(dir, "vigil.yml")
	writeFile(t, cfg, fmt.Sprintf(`remote_write:
  - url: http://%s/api/v1/write
    name: victoria-metrics
    queue_config:
      min_backoff: 100ms
      max_backoff: 1s
      batch_send_deadline: 1s
`, vmAddr))
	v := peers.StartVigil(t, filepath.Join(dir, "data"), "--config.file", cfg)

	const seriesPerReq = 200
	sender, err := remoteapi.NewAPI(v.URL(), remoteapi.WithAPIPath("/api/v1/write"), remoteapi.WithAPINoRetryOnRateLimit(),
		remoteapi.WithAPIBackoff(remoteapi.BackoffConfig{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond, MaxRetries: 1}))
	if err != nil {
		t.Fatal(err)
	}
	var acked, sent atomic.Int64
	var stopping atomic.Bool // not a context: stopping must not cancel a write in flight
	stop := func() { stopping.Store(true) }
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := int64(0)
		for k := 0; !stopping.Load(); k++ {
			ts := max(time.Now().UnixMilli(), last+1)
			last = ts
			req := &prompb.WriteRequest{}
			for i := range seriesPerReq {
				req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
					Labels:  []prompb.Label{{Name: "__name__", Value: "fwd_test"}, {Name: "series", Value: strconv.Itoa(i)}},
					Samples: []prompb.Sample{{Value: float64(k), Timestamp: ts}},
				})
			}
			sent.Add(seriesPerReq)
			wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if _, err := sender.Write(wctx, remoteapi.WriteV1MessageType, req); err == nil {
				acked.Add(seriesPerReq)
			}
			cancel()
			time.Sleep(20 * time.Millisecond)
		}
	}()

	heap := func() float64 { return metricValue(t, v.URL(), "go_memstats_heap_inuse_bytes") }
	time.Sleep(5 * time.Second)
	heapBefore := heap()
	if err := vm.Stop(30 * time.Second); err != nil {
		t.Logf("victoria-metrics stopped: %v", err)
	}
	downAt := acked.Load()
	time.Sleep(15 * time.Second)
	heapDown := heap()
	pending := metricValue(t, v.URL(), "prometheus_remote_storage_samples_pending")
	failed := metricValue(t, v.URL(), "prometheus_remote_storage_samples_retried_total")
	vm = peers.StartVictoriaMetrics(t, vmAddr, vmDir)
	time.Sleep(5 * time.Second)
	stop()
	<-done

	want := acked.Load()
	t.Logf("sent %d samples, acknowledged %d (%d while VictoriaMetrics was down)", sent.Load(), want, want-downAt)
	var got int64
	eventually(t, 60*time.Second, "every acknowledged sample in VictoriaMetrics", func() bool {
		got = vmCount(t, vm.URL(), `sum(count_over_time(fwd_test[1h]))`)
		return got >= want
	})
	// A write that timed out may still have been stored: at least every
	// acknowledged sample, at most every sent one, each once.
	if got < want || got > sent.Load() {
		t.Errorf("VictoriaMetrics has %d samples, Vigil acknowledged %d of %d sent", got, want, sent.Load())
	}
	t.Logf("found %d in VictoriaMetrics; heap in use %.1f MiB before the outage, %.1f MiB after 15s of it (%.0f samples pending in memory, %.0f retried)",
		got, heapBefore/(1<<20), heapDown/(1<<20), pending, failed)
	if heapDown-heapBefore > 64<<20 {
		t.Errorf("heap grew by %.1f MiB during the outage; samples should wait in the WAL", (heapDown-heapBefore)/(1<<20))
	}
	if want-downAt == 0 {
		t.Error("no sample was acknowledged while VictoriaMetrics was down: ingest must not depend on the forwarding target")
	}
}

// metricValue sums every sample of a metric on a /metrics page, over all
// its label sets (selfMetric reads one exact series).
func metricValue(t *testing.T, base, name string) float64 {
	t.Helper()
	var sum float64
	for _, line := range strings.Split(httpGetBody(t, base+"/metrics"), "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok && (strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "{")) {
			f, err := strconv.ParseFloat(rest[strings.LastIndex(rest, " ")+1:], 64)
			if err == nil {
				sum += f
			}
		}
	}
	return sum
}

// vmCount runs an instant query against VictoriaMetrics and returns the
// single value as an integer (0 when empty).
func vmCount(t *testing.T, base, q string) int64 {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?" + url.Values{"query": {q}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	if len(r.Data.Result) == 0 {
		return 0
	}
	f, _ := strconv.ParseFloat(r.Data.Result[0].Value[1].(string), 64)
	return int64(f)
}

// TestRemoteReadPassthrough: Vigil answers a query for data it does not
// hold from a Prometheus (Debian's) it reads by remote_read, so Grafana
// keeps one data source for ranges past Vigil's retention; data Vigil holds
// is not asked of the remote (read_recent: false).
func TestRemoteReadPassthrough(t *testing.T) {
	prom := peers.StartPrometheus(t, func(string) string { return "global:\n  scrape_interval: 1h\n" },
		"--web.enable-remote-write-receiver")
	old := time.Now().Add(-90 * time.Minute)
	var series []prompb.TimeSeries
	for i := range 10 {
		series = append(series, gauge("archived_metric", float64(i), old.Add(time.Duration(i)*time.Minute), "source", "prometheus"))
	}
	req := &prompb.WriteRequest{}
	for _, s := range series { // one series, ten samples in order
		if len(req.Timeseries) == 0 {
			req.Timeseries = append(req.Timeseries, s)
			continue
		}
		req.Timeseries[0].Samples = append(req.Timeseries[0].Samples, s.Samples...)
	}
	remoteWrite(t, prom.URL(), req)

	dir := t.TempDir()
	cfg := filepath.Join(dir, "vigil.yml")
	writeFile(t, cfg, fmt.Sprintf("remote_read:\n  - url: http://%s/api/v1/read\n    read_recent: false\n", prom.Addr))
	v := peers.StartVigil(t, filepath.Join(dir, "data"), "--config.file", cfg)
	remoteWrite(t, v.URL(), &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{gauge("local_metric", 1, time.Now(), "source", "vigil")}})

	d := rangeQuery(t, v.URL(), `archived_metric`, old, old.Add(10*time.Minute), time.Minute)
	if !contains(string(d.Result), `"source":"prometheus"`, `"9"]`) {
		t.Errorf("archived_metric through remote_read = %s", d.Result)
	}
	if d := instant(t, v.URL(), `local_metric`, time.Now().Add(time.Second)); !strings.Contains(string(d.Result), `"source":"vigil"`) {
		t.Errorf("local_metric = %s", d.Result)
	}
}
