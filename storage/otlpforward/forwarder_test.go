package otlpforward

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

func traces(name string) ptrace.Traces {
	td := ptrace.NewTraces()
	td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName(name)
	return td
}

// TestRetrySemantics: the statuses the OTLP/HTTP specification calls
// retryable are retried in order; other refusals drop the request and go on.
// (The server here answers with scripted statuses: no real backend can be
// made to answer 429 or 400 on demand. The e2e test forwards to a real one.)
func TestRetrySemantics(t *testing.T) {
	tests := []struct {
		name      string
		statuses  []int // answers to successive requests; 200 after
		wantNames []string
		retries   float64
		dropped   float64
	}{
		{"503 then delivered", []int{503, 503}, []string{"a", "a", "a", "b"}, 2, 0},
		{"429 with Retry-After", []int{429}, []string{"a", "a", "b"}, 1, 0},
		{"400 dropped, next sent", []int{400}, []string{"a", "b"}, 0, 1},
		{"500 is not retryable", []int{500}, []string{"a", "b"}, 0, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var got []string
			n := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var req = ptrace.NewTraces()
				if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || r.Header.Get("X-Scope-OrgID") != "tenant" {
					t.Errorf("request %s %v", r.URL.Path, r.Header)
				}
				body, _ := io.ReadAll(r.Body)
				tr := ptrace.ProtoUnmarshaler{}
				if td, err := (&tr).UnmarshalTraces(body); err == nil {
					req = td
				}
				mu.Lock()
				defer mu.Unlock()
				got = append(got, req.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Name())
				if n < len(tc.statuses) {
					if tc.statuses[n] == 429 {
						w.Header().Set("Retry-After", "1")
					}
					w.WriteHeader(tc.statuses[n])
				}
				n++
			}))
			defer srv.Close()
			reg := prometheus.NewRegistry()
			f, err := New(Config{Name: "t", Endpoint: srv.URL, Headers: map[string]string{"X-Scope-OrgID": "tenant"},
				MinBackoff: model.Duration(10 * time.Millisecond), MaxBackoff: model.Duration(50 * time.Millisecond)}, t.TempDir(), nil, reg)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, name := range []string{"a", "b"} {
				if err := f.ConsumeTraces(context.Background(), traces(name)); err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				mu.Lock()
				done := len(got) >= len(tc.wantNames)
				mu.Unlock()
				if done && f.queue.Pending() == 0 {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != len(tc.wantNames) {
				t.Fatalf("requests %v, want %v", got, tc.wantNames)
			}
			for i := range got {
				if got[i] != tc.wantNames[i] {
					t.Fatalf("requests %v, want %v", got, tc.wantNames)
				}
			}
			var retries float64
			for _, c := range []string{"503", "429"} {
				retries += testutil.ToFloat64(f.retried.WithLabelValues(c))
			}
			if retries != tc.retries || testutil.ToFloat64(f.dropped.WithLabelValues("rejected")) != tc.dropped {
				t.Errorf("retries %v dropped %v, want %v and %v", retries, testutil.ToFloat64(f.dropped.WithLabelValues("rejected")), tc.retries, tc.dropped)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{Name: "", Endpoint: "http://x"},
		{Name: "a/b", Endpoint: "http://x"},
		{Name: "a", Endpoint: "ftp://x"},
		{Name: "a", Endpoint: "http://x", Signals: []string{"metrics"}},
		{Name: "a", Endpoint: "http://x", MaxQueueSize: 1024},
	} {
		c.Defaults()
		if err := c.Validate(); err == nil {
			t.Errorf("%+v was accepted", c)
		}
	}
}
