package main

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/vigilhq/vigil/internal/peers"
)

// TestOTLPForwardingSurvivesOutageAndRestart: Vigil forwards OTLP traces to
// a backend (a second Vigil, which speaks OTLP/HTTP) that is down. The
// OTel SDK sends 1000 spans; they wait in the disk queue; Vigil is
// restarted; the backend comes up; every span arrives, once.
func TestOTLPForwardingSurvivesOutageAndRestart(t *testing.T) {
	backendAddrs := peers.VigilAddrs{HTTP: peers.FreeAddr(t)}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "vigil.yml")
	writeFile(t, cfg, fastFlushConfig+fmt.Sprintf(`otlp_forward:
  - name: backend
    endpoint: http://%s/otlp
    signals: [traces]
    min_backoff: 100ms
    max_backoff: 500ms
`, backendAddrs.HTTP))
	front := peers.StartVigil(t, filepath.Join(dir, "data"), "--config.file", cfg)

	ctx := context.Background()
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(front.OTLPHTTP), otlptracehttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(otelResource("forwarded", "v1")), sdktrace.WithBatcher(exp, sdktrace.WithMaxExportBatchSize(100)))
	tracer := tp.Tracer("forward-e2e")
	for i := range 1000 {
		_, span := tracer.Start(ctx, "GET /item", trace.WithSpanKind(trace.SpanKindServer))
		if i%10 == 0 {
			span.SetStatus(codes.Error, "boom")
		}
		span.End()
		if i%100 == 99 {
			if err := tp.ForceFlush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// Every span counted locally; the backend is down, so they all wait.
	waitValue(t, front.URL(), `sum(traces_span_metrics_calls_total{service="forwarded"})`, 1000)
	if q := metricValue(t, front.URL(), "vigil_otlp_forward_queue_bytes"); q == 0 {
		t.Fatal("nothing waits in the queue while the backend is down")
	}

	// Restart the front Vigil: the queue is on disk.
	if err := front.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	front = peers.StartVigilAt(t, front.Addrs(), front.DataDir, "--config.file", cfg)

	backend := peers.StartVigilAt(t, backendAddrs, filepath.Join(t.TempDir(), "backend"), "--config.file", writeTemp(t, fastFlushConfig))
	waitValue(t, backend.URL(), `sum(traces_span_metrics_calls_total{service="forwarded"})`, 1000)
	waitValue(t, backend.URL(), `sum(traces_span_metrics_calls_total{service="forwarded",status_code="STATUS_CODE_ERROR"})`, 100)
	eventually(t, 10*time.Second, "an empty queue", func() bool {
		return metricValue(t, front.URL(), "vigil_otlp_forward_queue_bytes") == 0
	})
	t.Logf("1000 spans forwarded through an outage and a restart; retries before the restart are in the first process's metrics")
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vigil.yml")
	writeFile(t, p, content)
	return p
}
