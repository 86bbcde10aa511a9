package hotpath_test

import (
	"bytes"
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	promstorage "github.com/prometheus/prometheus/storage"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/vigilhq/vigil/collector"
	"github.com/vigilhq/vigil/collector/derived"
	"github.com/vigilhq/vigil/collector/hotpath"
	"github.com/vigilhq/vigil/collector/otlp"
	"github.com/vigilhq/vigil/collector/remotewrite"
	"github.com/vigilhq/vigil/collector/streamaggr"
	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/internal/semconv"
	"github.com/vigilhq/vigil/storage"
)

// derivedServer is the store's ingest path: remote_write and OTLP
// receivers writing through the hot path into a real TSDB, behind
// internal/auth with two write tokens, "agents" and "collectors" (or none:
// every request is anonymous).
type derivedServer struct {
	url     string
	store   *storage.Storage
	metrics *collector.Metrics
	pipe    *hotpath.Pipeline
}

func newDerivedServer(t *testing.T, withTokens bool, accept ...string) *derivedServer {
	t.Helper()
	scfg := storage.DefaultConfig()
	scfg.Path = t.TempDir()
	st, err := storage.Open(scfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	cfg := hotpath.DefaultConfig()
	cfg.AcceptDerivedSeriesFrom = accept
	pipe, err := hotpath.New(cfg, st, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	m := collector.NewMetrics(prometheus.NewRegistry())
	rw, err := remotewrite.New(remotewrite.DefaultConfig(), pipe, st.Metadata(), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	rcv, err := otlp.New(otlp.DefaultConfig(), otlp.Consumers{Metrics: pipe, Metadata: st.Metadata()}, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	authn := auth.New(nil, prometheus.NewRegistry())
	if withTokens {
		var toks []auth.TokenConfig
		for _, name := range []string{"agents", "collectors"} {
			f := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(f, []byte(name+"-secret"), 0o600); err != nil {
				t.Fatal(err)
			}
			toks = append(toks, auth.TokenConfig{Name: name, TokenFile: f, Scopes: []auth.Scope{auth.ScopeWrite}})
		}
		if err := authn.Load(auth.Config{Tokens: toks}, nil); err != nil {
			t.Fatal(err)
		}
	}
	mux := auth.NewMux(authn, func(_ string, h http.Handler) http.Handler { return h })
	mux.Handle("/api/v1/write", auth.ScopeWrite, rw)
	mux.Handle("/otlp/v1/", auth.ScopeWrite, rcv.HTTPHandler("/otlp/v1"))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &derivedServer{url: srv.URL, store: st, metrics: m, pipe: pipe}
}

func (s *derivedServer) remoteWrite(t *testing.T, principal string, ts ...prompb.TimeSeries) (int, string) {
	t.Helper()
	wr := &prompb.WriteRequest{Timeseries: ts}
	b, err := wr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, s.url+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, b)))
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	if principal != "" {
		req.Header.Set("Authorization", "Bearer "+principal+"-secret")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// count is how many samples the store holds of series matching the name.
func (s *derivedServer) count(t *testing.T, name string) int {
	t.Helper()
	q, err := s.store.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	n := 0
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, model.MetricNameLabel, name))
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() != 0 {
			n++
		}
	}
	return n
}

func tsOf(name string, v float64, at time.Time, kv ...string) prompb.TimeSeries {
	ls := []prompb.Label{{Name: "__name__", Value: name}}
	for i := 0; i+1 < len(kv); i += 2 {
		ls = append(ls, prompb.Label{Name: kv[i], Value: kv[i+1]})
	}
	return prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Value: v, Timestamp: at.UnixMilli()}}}
}

// TestDerivedSeriesRefused: a writer not listed in
// ingest.accept_derived_series_from cannot write the series the verdict
// trusts — span metrics that would fail checkout v2, a deployment, log
// errors — over remote_write (even once a listed writer has written the
// same series and it is known to the series cache) or OTLP; the other
// series of its request are stored, and the refusals are counted as
// derived_series. A listed writer's are stored.
func TestDerivedSeriesRefused(t *testing.T) {
	forged := []string{semconv.SpanCalls, semconv.SpanDuration + "_bucket", semconv.ServiceGraphRequests, semconv.LogRecords, semconv.DeploymentInfo, semconv.VerdictInfo, semconv.Alerts, semconv.AlertsForState, semconv.DeployErrorRatio}
	for _, tc := range []struct {
		name      string
		accept    []string
		principal string
		refused   bool
	}{
		{"nobody listed, an agent writes", nil, "agents", true},
		{"nobody listed, no authentication", nil, "", true},
		{"collectors listed, an agent writes", []string{"collectors"}, "agents", true},
		{"collectors listed, a collector writes", []string{"collectors"}, "collectors", false},
		{"anonymous listed, no authentication", []string{"anonymous"}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newDerivedServer(t, tc.principal != "", tc.accept...)
			now := time.Now()
			var ts []prompb.TimeSeries
			for _, name := range forged {
				ts = append(ts, tsOf(name, 900, now, "service", "checkout", "version", "v2", "status_code", semconv.StatusError, "span_kind", semconv.KindServer, "le", "+Inf"))
			}
			ts = append(ts, tsOf("http_requests_total", 1, now, "job", "checkout"))
			code, body := s.remoteWrite(t, tc.principal, ts...)
			if s.count(t, "http_requests_total") != 1 {
				t.Errorf("the ordinary series of the request was not stored (%d %s)", code, body)
			}
			for _, name := range forged {
				if got, want := s.count(t, name), map[bool]int{true: 0, false: 1}[tc.refused]; got != want {
					t.Errorf("%s: %d samples stored, want %d", name, got, want)
				}
			}
			rejected := testutil.ToFloat64(s.metrics.Rejected.WithLabelValues(remotewrite.ReceiverName, collector.ReasonDerivedSeries))
			if tc.refused {
				writer := tc.principal
				if writer == "" {
					writer = "anonymous"
				}
				if code != http.StatusBadRequest || !strings.Contains(body, "derived_series: 9") || !strings.Contains(body, `"`+writer+`" may not write it`) {
					t.Errorf("answer %d %q, want 400 naming derived_series and the writer", code, body)
				}
				if rejected != float64(len(forged)) {
					t.Errorf("vigil_ingest_rejected_samples_total{reason=derived_series} = %v, want %d", rejected, len(forged))
				}
			} else if code/100 != 2 || rejected != 0 {
				t.Errorf("answer %d %q, %v refused, want all stored", code, body, rejected)
			}
		})
	}
}

// TestDerivedSeriesCachedRefStillChecked: once a collector has written a
// span metric series (the series cache knows its wire labels), an agent
// sending the very same series is still refused: the cache never holds a
// derived series.
func TestDerivedSeriesCachedRefStillChecked(t *testing.T) {
	s := newDerivedServer(t, true, "collectors")
	now := time.Now()
	series := func(v float64, at time.Time) prompb.TimeSeries {
		return tsOf(semconv.SpanCalls, v, at, "service", "checkout", "span_kind", semconv.KindServer, "status_code", semconv.StatusError, "version", "v2")
	}
	for i := range 3 {
		if code, body := s.remoteWrite(t, "collectors", series(float64(i), now.Add(time.Duration(i)*time.Second))); code/100 != 2 {
			t.Fatalf("collector's write %d: %d %s", i, code, body)
		}
	}
	if code, body := s.remoteWrite(t, "agents", series(1e6, now.Add(5*time.Second))); code != http.StatusBadRequest || !strings.Contains(body, collector.ReasonDerivedSeries) {
		t.Fatalf("agent's forged sample of a known series: %d %s, want 400 derived_series", code, body)
	}
	if n := s.count(t, semconv.SpanCalls); n != 3 {
		t.Errorf("%d samples stored, want the collector's 3", n)
	}
	// An ordinary series is cached as before: the agent's second write of
	// it is by reference, and stored.
	for i := range 2 {
		if code, body := s.remoteWrite(t, "agents", tsOf("up", 1, now.Add(time.Duration(i)*time.Second), "job", "x")); code/100 != 2 {
			t.Fatalf("ordinary write %d: %d %s", i, code, body)
		}
	}
	if n := s.count(t, "up"); n != 2 {
		t.Errorf("up: %d samples, want 2", n)
	}
}

// TestDerivedSeriesOverOTLP: an OTLP counter that translates to a span
// metric name is refused the same way (partial success, counted).
func TestDerivedSeriesOverOTLP(t *testing.T) {
	s := newDerivedServer(t, true, "collectors")
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "checkout")
	sm := rm.ScopeMetrics().AppendEmpty()
	for _, name := range []string{"traces_span_metrics_calls", "orders"} {
		m := sm.Metrics().AppendEmpty()
		m.SetName(name)
		sum := m.SetEmptySum()
		sum.SetIsMonotonic(true)
		sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		dp := sum.DataPoints().AppendEmpty()
		dp.SetTimestamp(pcommon.NewTimestampFromTime(time.Now()))
		dp.SetDoubleValue(900)
		dp.Attributes().PutStr("status_code", semconv.StatusError)
	}
	body, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	for _, principal := range []string{"agents", "collectors"} {
		req, _ := http.NewRequest(http.MethodPost, s.url+"/otlp/v1/metrics", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-protobuf")
		if principal != "" {
			req.Header.Set("Authorization", "Bearer "+principal+"-secret")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		er := pmetricotlp.NewExportResponse()
		if err := er.UnmarshalProto(b); err != nil {
			t.Fatalf("%s: %d %q: %v", principal, resp.StatusCode, b, err)
		}
		ps := er.PartialSuccess()
		switch principal {
		case "agents":
			if ps.RejectedDataPoints() != 1 || !strings.Contains(ps.ErrorMessage(), collector.ReasonDerivedSeries) {
				t.Errorf("agents: partial success %d %q, want 1 rejected as derived_series", ps.RejectedDataPoints(), ps.ErrorMessage())
			}
			if n := s.count(t, semconv.SpanCalls); n != 0 {
				t.Errorf("agents: %d forged samples stored", n)
			}
		case "collectors":
			if ps.RejectedDataPoints() != 0 {
				t.Errorf("collectors: %d rejected: %s", ps.RejectedDataPoints(), ps.ErrorMessage())
			}
			if n := s.count(t, semconv.SpanCalls); n != 1 {
				t.Errorf("collectors: %d samples stored, want 1", n)
			}
		}
	}
	if n := s.count(t, "orders_total"); n != 1 { // the same sample, sent twice
		t.Errorf("orders_total: %d samples, want 1", n)
	}
}

// TestDerivedWriter: Vigil's own generators write derived series whatever
// the allow list says, labelled with the replica when one is set.
func TestDerivedWriter(t *testing.T) {
	for _, replica := range []string{"", "vigil-collector-7d9f-x2"} {
		s := newDerivedServer(t, false) // nobody may send derived series
		app := derived.NewWriter(s.pipe, replica).AppenderV2(context.Background())
		ls := labels.FromStrings(model.MetricNameLabel, semconv.SpanCalls, semconv.LabelService, "checkout")
		if _, err := app.Append(0, ls, 0, time.Now().UnixMilli(), 3, nil, nil, promstorage.AOptions{}); err != nil {
			t.Fatalf("replica %q: %v", replica, err)
		}
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
		q, _ := s.store.Querier(math.MinInt64, math.MaxInt64)
		set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, model.MetricNameLabel, semconv.SpanCalls))
		var got []string
		for set.Next() {
			got = append(got, set.At().Labels().String())
		}
		q.Close()
		want := `{__name__="traces_span_metrics_calls_total", service="checkout"}`
		if replica != "" {
			want = `{__name__="traces_span_metrics_calls_total", collector="` + replica + `", service="checkout"}`
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("replica %q: stored %v, want %s", replica, got, want)
		}
	}
}

// TestStreamAggregationOutputsNamed: on a replica, stream aggregation
// outputs carry its name too (the input, a workload's own series, does not).
func TestStreamAggregationOutputsNamed(t *testing.T) {
	scfg := storage.DefaultConfig()
	scfg.Path = t.TempDir()
	st, err := storage.Open(scfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	cfg := hotpath.DefaultConfig()
	cfg.Replica = "collector-3"
	cfg.StreamAggregation = []streamaggr.RuleConfig{{Match: streamaggr.Selectors{"http_requests_total"}, Interval: model.Duration(time.Minute), Without: []string{"pod"}, Outputs: []string{"count_series"}}}
	pipe, err := hotpath.New(cfg, st, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	app := pipe.AppenderV2(context.Background())
	for _, pod := range []string{"a", "b"} {
		if _, err := app.Append(0, labels.FromStrings(model.MetricNameLabel, "http_requests_total", "pod", pod), 0, time.Now().UnixMilli(), 1, nil, nil, promstorage.AOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	pipe.Run(ctx) // flushes once more on the way out
	q, _ := st.Querier(math.MinInt64, math.MaxInt64)
	defer q.Close()
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchRegexp, model.MetricNameLabel, "http_requests_total.+"))
	var got []string
	for set.Next() {
		got = append(got, set.At().Labels().String())
	}
	want := `{__name__="http_requests_total:1m_without_pod_count_series", collector="collector-3"}`
	if len(got) != 1 || got[0] != want {
		t.Errorf("stream aggregation outputs %v, want %s", got, want)
	}
}
