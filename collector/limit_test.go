package collector

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
)

func TestLimitConfigValidate(t *testing.T) {
	if err := DefaultLimitConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mutate func(*LimitConfig)
		want   string
	}{
		{func(c *LimitConfig) { c.MaxConcurrentRequests = 0 }, "max_concurrent_requests must be positive"},
		{func(c *LimitConfig) { c.MaxQueueDuration = -1 }, "max_queue_duration must not be negative"},
		{func(c *LimitConfig) { c.BodyReadTimeout = 0 }, "body_read_timeout must be positive"},
	} {
		c := DefaultLimitConfig()
		tc.mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}

// limitedServer admits requests through a limiter of one slot and answers
// with the size of the body it read; hold, when set, keeps the slot busy
// until it is closed.
func limitedServer(t *testing.T, l *Limiter, m *Metrics, hold chan struct{}) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := GetBuffer()
		defer PutBuffer(buf)
		release, err := l.ReadAndAdmit(w, r, "test", 1<<20, buf)
		if err != nil {
			m.Refused(w, "test", err)
			http.Error(w, err.Error(), StatusCode(err))
			return
		}
		defer release()
		if hold != nil && r.URL.Path == "/hold" {
			<-hold
		}
		fmt.Fprintf(w, "%d bytes", len(buf.B))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestLimiterReadsBeforeAdmitting: a client trickling its body holds no
// slot (others are served meanwhile) and is cut off with 408 after the body
// read timeout; a request that finds every slot busy is refused with 429
// and Retry-After.
func TestLimiterReadsBeforeAdmitting(t *testing.T) {
	reg := prometheus.NewRegistry()
	l, err := NewLimiter(LimitConfig{MaxConcurrentRequests: 1, MaxQueueDuration: model.Duration(200 * time.Millisecond), BodyReadTimeout: model.Duration(time.Second)}, reg)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(reg)
	hold := make(chan struct{})
	srv := limitedServer(t, l, m, hold)
	addr := strings.TrimPrefix(srv.URL, "http://")

	// A trickler announces 100 bytes and sends one every 100ms.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /slow HTTP/1.1\r\nHost: %s\r\nContent-Length: 100\r\n\r\n", addr)
	status := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(conn).ReadString('\n')
		status <- strings.TrimSpace(line)
	}()
	stopTrickle := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopTrickle:
				return
			case <-time.After(100 * time.Millisecond):
				if _, err := conn.Write([]byte{'x'}); err != nil {
					return
				}
			}
		}
	}()
	defer close(stopTrickle)

	// Meanwhile the only slot serves others.
	for i := range 3 {
		resp, err := http.Post(srv.URL+"/fast", "text/plain", strings.NewReader("hello"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != "5 bytes" {
			t.Fatalf("request %d while a body trickles: %d %s", i, resp.StatusCode, b)
		}
	}
	select {
	case line := <-status:
		if !strings.Contains(line, "408") {
			t.Errorf("trickler got %q, want 408", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the trickler was never answered")
	}
	if v := testutil.ToFloat64(m.RefusedRequests.WithLabelValues("test", RefusedBodyReadTimeout)); v != 1 {
		t.Errorf("refused body_read_timeout = %v, want 1", v)
	}

	// A request holding the slot: the next waits max_queue_duration, then 429.
	held := make(chan *http.Response, 1)
	go func() {
		resp, err := http.Post(srv.URL+"/hold", "text/plain", strings.NewReader("x"))
		if err == nil {
			resp.Body.Close()
		}
		held <- resp
	}()
	deadline := time.Now().Add(5 * time.Second)
	for len(l.slots) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := http.Post(srv.URL+"/fast", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("with the slot held: %d Retry-After %q, want 429 with Retry-After 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	close(hold)
	if r := <-held; r == nil || r.StatusCode != http.StatusOK {
		t.Errorf("the request holding the slot failed: %v", r)
	}
}

// TestNilLimiterReads: without a limiter a body is still read within its
// size limit.
func TestNilLimiterReads(t *testing.T) {
	var l *Limiter
	m := NewMetrics(nil)
	srv := limitedServer(t, l, m, nil)
	resp, err := http.Post(srv.URL, "text/plain", strings.NewReader(strings.Repeat("x", 2<<20)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "exceeds the limit of 1048576 bytes") {
		t.Errorf("got %d %s, want 413", resp.StatusCode, b)
	}
}
