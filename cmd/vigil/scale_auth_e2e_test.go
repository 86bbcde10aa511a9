package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/internal/peers"
	"github.com/vigilhq/vigil/internal/semconv"
)

// TestStoreTakesDerivedSeriesOnlyFromCollectors: a store with scoped
// tokens and ingest.accept_derived_series_from: [collectors]. A collector
// replica forwarding with the collectors' token gets its span metrics and
// its evidence in; the agents' write token, which any workload holds,
// cannot write span metrics or a deployment that would fail checkout v2 —
// over remote_write or OTLP/gRPC — nor forward evidence, while its ordinary
// series are stored. The refusals are counted by reason.
func TestStoreTakesDerivedSeriesOnlyFromCollectors(t *testing.T) {
	dir := t.TempDir()
	section, tokens := tokenFiles(t, dir)
	collectorsToken := filepath.Join(dir, "collectors.token")
	if err := os.WriteFile(collectorsToken, []byte("collectors-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	section += fmt.Sprintf("    - {name: collectors, token_file: %s, scopes: [write]}\n", collectorsToken)
	store := peers.StartVigil(t, "", "--config", writeConfig(t, scaleFlush+section+`
ingest:
  accept_derived_series_from: [collectors]
`))
	c := peers.StartVigil(t, "", "--config", writeConfig(t, collectorConfig(store.Addr, collectorsToken)), "--collector.replica", "collector-0")
	sent := newShopSent()
	newShopLoad(t, sent, c.OTLPGRPC).round(30, []string{"v1"}, map[string]int{"v1": 5})
	read := tokens[auth.ScopeRead]

	// What the agents' token tries.
	now := time.Now()
	forged := []prompb.TimeSeries{
		{Labels: []prompb.Label{{Name: "__name__", Value: semconv.SpanCalls}, {Name: "environment", Value: "production"}, {Name: "service", Value: "checkout"},
			{Name: "span_kind", Value: semconv.KindServer}, {Name: "status_code", Value: semconv.StatusError}, {Name: "version", Value: "v2"}},
			Samples: []prompb.Sample{{Value: 900, Timestamp: now.UnixMilli()}}},
		{Labels: []prompb.Label{{Name: "__name__", Value: semconv.DeploymentInfo}, {Name: "previous_version", Value: "v1"}, {Name: "service", Value: "checkout"}, {Name: "version", Value: "v2"}},
			Samples: []prompb.Sample{{Value: 1, Timestamp: now.UnixMilli()}}},
		{Labels: []prompb.Label{{Name: "__name__", Value: "orders_total"}, {Name: "service", Value: "checkout"}},
			Samples: []prompb.Sample{{Value: 7, Timestamp: now.UnixMilli()}}},
	}
	wr := &prompb.WriteRequest{Timeseries: forged}
	b, err := wr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, store.URL()+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, b)))
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Authorization", "Bearer "+tokens[auth.ScopeWrite])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body.String(), "derived_series: 2") || !strings.Contains(body.String(), `"agents" may not write it`) {
		t.Errorf("agents' remote_write of span metrics and a deployment: %d %s, want 400 naming derived_series", resp.StatusCode, body.String())
	}

	// The same over OTLP/gRPC, with the OpenTelemetry SDK.
	ctx := context.Background()
	exp, err := otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(store.OTLPGRPC), otlpmetricgrpc.WithInsecure(),
		otlpmetricgrpc.WithHeaders(map[string]string{"authorization": "Bearer " + tokens[auth.ScopeWrite]}))
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))),
		sdkmetric.WithResource(resource.NewSchemaless(attribute.String("service.name", "checkout"))))
	calls, _ := mp.Meter("forger").Float64Counter("traces_span_metrics_calls")
	calls.Add(ctx, 900, metric.WithAttributes(attribute.String("status_code", semconv.StatusError), attribute.String("span_kind", semconv.KindServer), attribute.String("version", "v2")))
	if err := mp.ForceFlush(ctx); err == nil || !strings.Contains(err.Error(), "partial success: derived_series: 1") {
		t.Errorf("agents' OTLP/gRPC export of span metrics: %v, want a partial success naming derived_series", err)
	}
	_ = mp.Shutdown(ctx)

	// And evidence.
	code, _, ebody := httpDo(t, http.DefaultClient, "POST", store.URL()+"/api/v1/evidence", tokens[auth.ScopeWrite],
		`{"collector":"x","records":[{"ring":"error_logs","service":"checkout","version":"v1","observedAt":"2026-01-01T00:00:00Z","record":{"body":"forged"}}]}`)
	if code != http.StatusForbidden {
		t.Errorf("agents' evidence: %d %s, want 403", code, ebody)
	}

	// The store: the collector's series and evidence, none of the forgeries.
	get := func(q string) string {
		_, _, b := httpDo(t, http.DefaultClient, "GET", store.URL()+"/api/v1/query?query="+urlQuery(q), read, "")
		return b
	}
	eventually(t, 30*time.Second, "the collector's span metrics and error logs on the store", func() bool {
		_, _, logs := httpDo(t, http.DefaultClient, "GET", store.URL()+"/api/v1/logs/recent?service=checkout", read, "")
		return strings.Contains(get(`sum(`+semconv.SpanCalls+`{collector="collector-0",service="checkout"})`), fmt.Sprintf(`"%d"`, sent.spans["checkout"])) &&
			strings.Contains(logs, `"collector":"collector-0"`)
	})
	for _, q := range []string{semconv.SpanCalls + `{version="v2"}`, semconv.DeploymentInfo, `{__name__=~"traces_span_metrics_calls_total", collector=""}`} {
		if r := get(q); !strings.Contains(r, `"result":[]`) {
			t.Errorf("%s on the store: %s, want nothing", q, r)
		}
	}
	if r := get(`orders_total`); !strings.Contains(r, `"7"`) {
		t.Errorf("the agents' ordinary series was not stored: %s", r)
	}
	_, _, m := httpDo(t, http.DefaultClient, "GET", store.URL()+"/metrics", read, "")
	// (The SDK exports the counter on ForceFlush and again on Shutdown.)
	for _, want := range []string{
		`vigil_ingest_rejected_samples_total{reason="derived_series",receiver="remote_write"} 2`,
		`vigil_ingest_rejected_samples_total{reason="derived_series",receiver="otlp"} 2`,
	} {
		if !strings.Contains(m, want) {
			var got []string
			for _, l := range strings.Split(m, "\n") {
				if strings.Contains(l, "derived_series") {
					got = append(got, l)
				}
			}
			t.Errorf("store's /metrics lacks %s; has %q", want, got)
		}
	}
	if _, _, logs := httpDo(t, http.DefaultClient, "GET", store.URL()+"/api/v1/logs/recent", read, ""); strings.Contains(logs, "forged") {
		t.Errorf("forged evidence kept: %s", logs)
	}
}

func urlQuery(q string) string {
	return strings.NewReplacer("%", "%25", "&", "%26", "+", "%2B", "#", "%23", " ", "%20", "{", "%7B", "}", "%7D", `"`, "%22").Replace(q)
}
