package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"

	"github.com/vigilhq/vigil/internal/peers"
)

// TestPrometheusRemoteWritesIntoVigil runs Debian's Prometheus scraping
// itself and remote-writing to Vigil, then reads the data back through
// Vigil's API, promtool and `vigil query`.
func TestPrometheusRemoteWritesIntoVigil(t *testing.T) {
	promtool := peers.Binary(t, "promtool")
	v := peers.StartVigil(t, "")
	prom := peers.StartPrometheus(t, func(addr string) string {
		return fmt.Sprintf(`
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['%s']
remote_write:
  - url: %s/api/v1/write
    queue_config:
      batch_send_deadline: 1s
    metadata_config:
      send_interval: 1s
`, addr, v.URL())
	})
	promAddr := prom.Addr

	var got queryData
	eventually(t, 60*time.Second, "prometheus_build_info in Vigil", func() bool {
		got = instant(t, v.URL(), `prometheus_build_info{job="prometheus"}`, time.Now())
		return got.ResultType == "vector" && strings.Contains(string(got.Result), `"version":"2.`)
	})

	// Metadata sent by Prometheus is served back.
	eventually(t, 30*time.Second, "metadata for prometheus_build_info", func() bool {
		_, r := apiGet(t, v.URL(), "/api/v1/metadata", url.Values{"metric": {"prometheus_build_info"}})
		return strings.Contains(string(r.Data), `"type":"gauge"`)
	})

	// Series, labels and label values see the written series.
	_, r := apiGet(t, v.URL(), "/api/v1/label/job/values", nil)
	if !strings.Contains(string(r.Data), `"prometheus"`) {
		t.Fatalf("label values of job: %s", r.Data)
	}
	_, r = apiGet(t, v.URL(), "/api/v1/series", url.Values{"match[]": {`up{job="prometheus"}`}})
	if !strings.Contains(string(r.Data), `"__name__":"up"`) {
		t.Fatalf("series: %s", r.Data)
	}

	// promtool, the Prometheus CLI, queries Vigil as it would a Prometheus.
	out, err := exec.Command(promtool, "query", "instant", v.URL(), `up{job="prometheus"}`).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `up{instance="`+promAddr+`", job="prometheus"} => 1`) {
		t.Fatalf("promtool query instant: %v\n%s", err, out)
	}
	now := time.Now()
	out, err = exec.Command(promtool, "query", "range", "--start", fmt.Sprint(now.Add(-30*time.Second).Unix()), "--end", fmt.Sprint(now.Unix()), "--step", "1s", v.URL(), `up{job="prometheus"}`).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "1 @[") {
		t.Fatalf("promtool query range: %v\n%s", err, out)
	}

	// vigil query: a table for people, JSON for scripts.
	stdout, stderr, code := runVigil(t, "query", "--server", v.URL(), `prometheus_build_info`)
	if code != 0 || !contains(stdout, "SERIES", "VALUE", `prometheus_build_info{branch=`, "  1  ") {
		t.Fatalf("vigil query exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	stdout, stderr, code = runVigil(t, "query", "--server", v.URL(), "-o", "json", `count(up)`)
	var js struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Value [2]any `json:"value"`
		} `json:"result"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &js) != nil || js.ResultType != "vector" || len(js.Result) != 1 || js.Result[0].Value[1] != "1" {
		t.Fatalf("vigil query -o json exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	stdout, _, code = runVigil(t, "query", "--server", v.URL(), "--range", "20s", "--step", "2s", `up{job="prometheus"}`)
	if code != 0 || !strings.Contains(stdout, `up{instance="`+promAddr+`", job="prometheus"}`+"\t") {
		t.Fatalf("vigil query range (not a terminal) exit %d:\n%s", code, stdout)
	}
}

func TestVigilQueryExitCodes(t *testing.T) {
	v := peers.StartVigil(t, "")
	_, stderr, code := runVigil(t, "query", "--server", v.URL(), `sum(rate(http_requests_total[5m]`)
	if code != exitFailure || !contains(stderr, "bad_data", "unclosed left parenthesis") {
		t.Fatalf("bad query: exit %d, stderr %q; want %d and the server's parse error", code, stderr, exitFailure)
	}
	_, stderr, code = runVigil(t, "query", "--server", "http://"+peers.FreeAddr(t), `up`)
	if code != exitInternal || !strings.Contains(stderr, "connection refused") {
		t.Fatalf("unreachable server: exit %d, stderr %q; want %d", code, stderr, exitInternal)
	}
	_, stderr, code = runVigil(t, "query", "--server", v.URL(), "--start", "yesterday", `up`)
	if code != exitUsage || !strings.Contains(stderr, `cannot parse "yesterday"`) {
		t.Fatalf("bad --start: exit %d, stderr %q; want %d", code, stderr, exitUsage)
	}
	stdout, _, code := runVigil(t, "query", "--server", v.URL(), `vector(1) + 1`)
	if code != 0 || !strings.Contains(stdout, "{}      2") {
		t.Fatalf("vector(1)+1: exit %d:\n%s", code, stdout)
	}
}

func TestServeRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "vigil.yml")
	if err := os.WriteFile(bad, []byte("storage:\n  path: "+dir+"\n  retension: 30d\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runVigil(t, "serve", "--config.file", bad, "--listen", peers.FreeAddr(t))
	if code != exitFailure || !contains(stderr, `line 3: unknown key "retension" in storage`) {
		t.Fatalf("exit %d, stderr %q; want exit 1 naming the key", code, stderr)
	}

	badValue := filepath.Join(dir, "bad-value.yml")
	if err := os.WriteFile(badValue, []byte("query:\n  max_samples: -5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, _, code := runVigil(t, "check", "config", badValue)
	if code != exitFailure || !contains(stdout, "FAILED", "query.max_samples must be positive, got -5") {
		t.Fatalf("check config exit %d:\n%s", code, stdout)
	}
	good := filepath.Join(dir, "good.yml")
	if err := os.WriteFile(good, []byte("web:\n  listen_address: 127.0.0.1:9400\nstorage:\n  retention: 30d\n  retention_size: 10GiB\nquery:\n  timeout: 1m\nreceivers:\n  remote_write:\n    max_request_bytes: 16MiB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, _, code = runVigil(t, "check", "config", good)
	if code != 0 || !strings.Contains(stdout, "SUCCESS") {
		t.Fatalf("check config good: exit %d:\n%s", code, stdout)
	}
}

// TestGracefulShutdownKeepsData writes samples, stops Vigil with SIGTERM and
// finds them again after a restart on the same data directory.
func TestGracefulShutdownKeepsData(t *testing.T) {
	dir := t.TempDir()
	v := peers.StartVigil(t, dir)
	for _, path := range []string{"/-/healthy", "/-/ready"} {
		resp, err := http.Get(v.URL() + path)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", path, err, resp)
		}
		resp.Body.Close()
	}
	now := time.Now().Add(-time.Minute).Truncate(time.Second)
	req := &prompb.WriteRequest{}
	for i := range 50 {
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
			Labels:  []prompb.Label{{Name: "__name__", Value: "shutdown_test"}, {Name: "i", Value: fmt.Sprint(i)}},
			Samples: []prompb.Sample{{Value: float64(i), Timestamp: now.UnixMilli()}},
		})
	}
	remoteWrite(t, v.URL(), req)

	resp, err := http.Get(v.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`vigil_ingest_samples_total{kind="float",receiver="remote_write"} 50`,
		`vigil_ingest_requests_total{code="204",receiver="remote_write"} 1`,
		"prometheus_tsdb_head_series 50",
		`vigil_http_request_duration_seconds_count{handler="/api/v1/write"} 1`,
		"vigil_build_info{",
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	if err := v.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := v.Wait(30 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("exit after SIGTERM: %d %v", code, err)
	}
	if !contains(v.Logs(), "shutting down gracefully", "Storage closed") {
		t.Fatalf("shutdown not logged:\n%s", v.Logs())
	}

	v2 := peers.StartVigil(t, dir)
	d := instant(t, v2.URL(), `count(shutdown_test)`, now.Add(time.Second))
	if !strings.Contains(string(d.Result), `"50"`) {
		t.Fatalf("after restart count(shutdown_test) = %s, want 50", d.Result)
	}
}
