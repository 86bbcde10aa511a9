package loadgen

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

func TestBuildTraces(t *testing.T) {
	tests := []struct {
		name       string
		cfg        TracesConfig
		wantSpans  int
		wantErrors int
	}{
		{"small", TracesConfig{Requests: 3, SpansPerRequest: 10, Services: 2, Operations: 3, ErrorEvery: 5, End: t0}, 30, 6},
		{"no errors", TracesConfig{Requests: 2, SpansPerRequest: 4, Services: 4, Operations: 1, End: t0}, 8, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := BuildTraces(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if p.Spans != tt.wantSpans || p.Errors != tt.wantErrors || len(p.Bodies) != tt.cfg.Requests {
				t.Fatalf("spans %d errors %d bodies %d, want %d %d %d", p.Spans, p.Errors, len(p.Bodies), tt.wantSpans, tt.wantErrors, tt.cfg.Requests)
			}
			spans, errs := 0, 0
			for _, b := range p.Bodies {
				req := ptraceotlp.NewExportRequest()
				if err := req.UnmarshalProto(b); err != nil {
					t.Fatal(err)
				}
				rss := req.Traces().ResourceSpans()
				if rss.Len() != tt.cfg.Services {
					t.Fatalf("%d resources, want %d", rss.Len(), tt.cfg.Services)
				}
				for i := range rss.Len() {
					if v, ok := rss.At(i).Resource().Attributes().Get("service.version"); !ok || v.Str() != "v1" {
						t.Fatalf("resource %d has no service.version v1", i)
					}
					ss := rss.At(i).ScopeSpans().At(0).Spans()
					for j := range ss.Len() {
						sp := ss.At(j)
						spans++
						if sp.Status().Code() == ptrace.StatusCodeError {
							errs++
						}
						if sp.Kind() != ptrace.SpanKindServer || sp.EndTimestamp().AsTime() != t0 || sp.StartTimestamp() >= sp.EndTimestamp() {
							t.Fatalf("span %v: kind %v, %v..%v", sp.Name(), sp.Kind(), sp.StartTimestamp(), sp.EndTimestamp())
						}
					}
				}
			}
			if spans != tt.wantSpans || errs != tt.wantErrors {
				t.Fatalf("decoded %d spans, %d errors; want %d, %d", spans, errs, tt.wantSpans, tt.wantErrors)
			}
		})
	}
	if _, err := BuildTraces(TracesConfig{Requests: 1, SpansPerRequest: 1, Services: 2, Operations: 1, End: t0}); err == nil || !strings.Contains(err.Error(), "one span per service") {
		t.Fatalf("fewer spans than services: got %v", err)
	}
}

func TestReplayOTLPHeaders(t *testing.T) {
	p, err := BuildTraces(TracesConfig{Requests: 5, SpansPerRequest: 2, Services: 1, Operations: 1, End: t0})
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") != "application/x-protobuf" || r.Header.Get("Content-Encoding") != "" {
			http.Error(w, "bad headers", http.StatusUnsupportedMediaType)
			return
		}
		b, _ := io.ReadAll(r.Body)
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got.Add(int64(req.Traces().SpanCount()))
	}))
	defer srv.Close()
	res, err := ReplayRounds(context.Background(), SenderConfig{URL: srv.URL, Senders: 2, Timeout: time.Second, Headers: OTLPHeaders()}, [][][]byte{p.Bodies})
	if err != nil || res.Failed != 0 {
		t.Fatalf("%v %+v", err, res)
	}
	if got.Load() != int64(p.Spans) {
		t.Fatalf("receiver got %d spans, want %d", got.Load(), p.Spans)
	}
}
