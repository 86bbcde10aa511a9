package loadgen

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"

	"github.com/vigilhq/vigil/collector/remotewrite"
	"github.com/vigilhq/vigil/internal/peers"
)

// recorder is a remote_write endpoint that decodes with Vigil's decoder and
// counts what it got, refusing the first failFirst requests with status.
type recorder struct {
	mu        sync.Mutex
	samples   int
	newest    map[string]int64 // series -> newest timestamp
	outOfOrd  int
	calls     atomic.Int64
	failFirst int64
	status    int
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if n := rec.calls.Add(1); n <= rec.failFirst {
		http.Error(w, "try later", rec.status)
		return
	}
	if r.Header.Get("Content-Encoding") != "snappy" || r.Header.Get("X-Prometheus-Remote-Write-Version") != "0.1.0" {
		http.Error(w, "bad headers", http.StatusUnsupportedMediaType)
		return
	}
	body, _ := io.ReadAll(r.Body)
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req remotewrite.Request
	if err := remotewrite.DecodeV1(raw, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, s := range req.Series {
		key := fmt.Sprint(s.Labels)
		for _, smp := range s.Samples {
			if smp.Timestamp <= rec.newest[key] {
				rec.outOfOrd++
			}
			rec.newest[key] = smp.Timestamp
			rec.samples++
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func TestReplay(t *testing.T) {
	p, err := Build(small(func(c *Config) { c.Series = 1000; c.SeriesPerRequest = 7; c.Rounds = 5 }))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		senders     int
		failFirst   int64
		status      int
		retries     int
		wantFailed  int
		wantRetried int
		wantError   string
	}{
		{"one sender", 1, 0, 0, 3, 0, 0, ""},
		{"eight senders", 8, 0, 0, 3, 0, 0, ""},
		{"503 is retried", 1, 2, http.StatusServiceUnavailable, 3, 0, 2, ""},
		{"429 is retried", 4, 1, http.StatusTooManyRequests, 3, 0, 1, ""},
		{"400 is not retried", 1, 1, http.StatusBadRequest, 3, 1, 0, "400 Bad Request: try later"},
		{"retries run out", 1, 3, http.StatusInternalServerError, 2, 1, 2, "500 Internal Server Error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{newest: map[string]int64{}, failFirst: tt.failFirst, status: tt.status}
			srv := httptest.NewServer(rec)
			defer srv.Close()
			res, err := Replay(context.Background(), SenderConfig{URL: srv.URL, Senders: tt.senders, Retries: tt.retries, Timeout: 5 * time.Second}, p)
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests != p.Requests() || len(res.Rounds) != p.Config.Rounds {
				t.Errorf("sent %d requests in %d rounds, want %d in %d", res.Requests, len(res.Rounds), p.Requests(), p.Config.Rounds)
			}
			if res.Failed != tt.wantFailed || res.Retried != tt.wantRetried {
				t.Errorf("failed %d retried %d, want %d and %d", res.Failed, res.Retried, tt.wantFailed, tt.wantRetried)
			}
			if !strings.Contains(res.FirstError, tt.wantError) || (tt.wantError == "") != (res.FirstError == "") {
				t.Errorf("first error %q, want one containing %q", res.FirstError, tt.wantError)
			}
			wantSamples := p.Samples - tt.wantFailed*7
			if rec.samples != wantSamples {
				t.Errorf("endpoint got %d samples, want %d", rec.samples, wantSamples)
			}
			if rec.outOfOrd != 0 {
				t.Errorf("%d samples arrived out of order: rounds must be sent in order", rec.outOfOrd)
			}
		})
	}
}

func TestReplayCanceled(t *testing.T) {
	p, err := Build(small(nil))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Replay(ctx, SenderConfig{URL: srv.URL, Senders: 2, Timeout: time.Second}, p); err != context.Canceled {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

// TestReplayVerifyPrometheus sends a small load with churn into Debian's
// Prometheus and checks that Verify passes, and that it fails naming the
// missing metric when a request was not delivered.
func TestReplayVerifyPrometheus(t *testing.T) {
	bin := peers.Binary(t, "prometheus")
	dir := t.TempDir()
	addr := peers.FreeAddr(t)
	cfg := filepath.Join(dir, "prometheus.yml")
	writeFile(t, cfg, "global: {}\n")
	prom := peers.StartIn(t, dir, "prometheus", bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--web.enable-remote-write-receiver")
	prom.Addr = addr
	prom.WaitHTTP(t, prom.URL()+"/-/ready", time.Minute)

	p, err := Build(Config{Series: 2000, Labels: 6, Metrics: 4, SeriesPerRequest: 300, Rounds: 3, Interval: 15 * time.Second,
		Churn: 0.05, Start: time.Now().Add(-time.Minute).Truncate(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	q, err := NewQuerier(prom.URL())
	if err != nil {
		t.Fatal(err)
	}
	// Everything but the last request of each round: those series are
	// missing altogether, verification must fail.
	partial := &Payload{Config: p.Config}
	rest := &Payload{Config: p.Config}
	for _, round := range p.Rounds {
		partial.Rounds = append(partial.Rounds, round[:len(round)-1])
		rest.Rounds = append(rest.Rounds, round[len(round)-1:])
	}
	res, err := Replay(ctx, SenderConfig{URL: prom.URL() + "/api/v1/write", Senders: 3, Timeout: 10 * time.Second}, partial)
	if err != nil || res.Failed != 0 {
		t.Fatalf("replay: %v %+v", err, res)
	}
	err = Verify(ctx, q, prom.URL(), p)
	if err == nil || !strings.Contains(err.Error(), "sum(count_over_time(bench_metric_0") || !strings.Contains(err.Error(), "series stored, want 2200") {
		t.Fatalf("verify of a partial load: got %v, want failed sample and series counts", err)
	}
	// The missing requests: now everything is there.
	if _, err := Replay(ctx, SenderConfig{URL: prom.URL() + "/api/v1/write", Senders: 1, Timeout: 10 * time.Second}, rest); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, q, prom.URL(), p); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
