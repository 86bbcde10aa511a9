package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/vigilhq/vigil/collector"
	"github.com/vigilhq/vigil/collector/hotpath"
	"github.com/vigilhq/vigil/storage"
)

type countingTraces struct{ spans int }

func (c *countingTraces) ConsumeTraces(_ context.Context, td ptrace.Traces) error {
	c.spans += td.SpanCount()
	return nil
}

type countingLogs struct{ records int }

func (c *countingLogs) ConsumeLogs(_ context.Context, ld plog.Logs) error {
	c.records += ld.LogRecordCount()
	return nil
}

type fixture struct {
	store  *storage.Storage
	srv    *httptest.Server
	traces *countingTraces
	logs   *countingLogs
}

func newFixture(t testing.TB, mutate func(*Config)) *fixture {
	t.Helper()
	scfg := storage.DefaultConfig()
	scfg.Path = t.TempDir()
	store, err := storage.Open(scfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cfg := DefaultConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	f := &fixture{store: store, traces: &countingTraces{}, logs: &countingLogs{}}
	pipe, err := hotpath.New(hotpath.DefaultConfig(), store, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(cfg, Consumers{Metrics: pipe, Metadata: store.Metadata(), Traces: f.traces, Logs: f.logs},
		collector.NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(r.HTTPHandler("/v1"))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) post(t *testing.T, path, contentType string, body []byte, gz bool) (int, []byte) {
	t.Helper()
	if gz {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write(body)
		w.Close()
		body = b.Bytes()
	}
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// samples returns the float samples of the series named name.
func (f *fixture) samples(t *testing.T, name string) []float64 {
	t.Helper()
	q, err := f.store.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, model.MetricNameLabel, name))
	var out []float64
	for ss.Next() {
		it := ss.At().Iterator(nil)
		for it.Next() != 0 {
			_, v := it.At()
			out = append(out, v)
		}
	}
	return out
}

func sumMetrics(name string, ts time.Time, temporality pmetric.AggregationTemporality, values ...float64) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "checkout")
	rm.Resource().Attributes().PutStr("service.version", "v3")
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName(name)
	s := m.SetEmptySum()
	s.SetIsMonotonic(true)
	s.SetAggregationTemporality(temporality)
	for i, v := range values {
		dp := s.DataPoints().AppendEmpty()
		dp.SetTimestamp(pcommon.NewTimestampFromTime(ts.Add(time.Duration(i) * time.Second)))
		dp.SetDoubleValue(v)
		dp.SetStartTimestamp(pcommon.NewTimestampFromTime(ts.Add(-time.Minute)))
	}
	return md
}

func marshalMetrics(t *testing.T, md pmetric.Metrics, json bool) []byte {
	t.Helper()
	req := pmetricotlp.NewExportRequestFromMetrics(md)
	var b []byte
	var err error
	if json {
		b, err = req.MarshalJSON()
	} else {
		b, err = req.MarshalProto()
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHTTPMetrics(t *testing.T) {
	now := time.Now().Truncate(time.Millisecond)
	for _, tc := range []struct {
		name string
		json bool
		gz   bool
	}{
		{"proto", false, false},
		{"json", true, false},
		{"proto gzip", false, true},
		{"json gzip", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			ct := contentTypeProto
			if tc.json {
				ct = contentTypeJSON
			}
			code, body := f.post(t, "/v1/metrics", ct, marshalMetrics(t, sumMetrics("orders", now, pmetric.AggregationTemporalityCumulative, 1, 2, 5), tc.json), tc.gz)
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, body)
			}
			resp := pmetricotlp.NewExportResponse()
			if tc.json {
				err := resp.UnmarshalJSON(body)
				if err != nil {
					t.Fatal(err)
				}
			} else if err := resp.UnmarshalProto(body); err != nil {
				t.Fatal(err)
			}
			if ps := resp.PartialSuccess(); ps.RejectedDataPoints() != 0 {
				t.Errorf("partial success %d: %s", ps.RejectedDataPoints(), ps.ErrorMessage())
			}
			if got := f.samples(t, "orders_total"); len(got) != 3 || got[2] != 5 {
				t.Errorf("orders_total samples = %v, want [1 2 5]", got)
			}
		})
	}
}

// TestHTTPMetricsPartialSuccess: what storage cannot hold is answered as
// an OTLP partial success naming the reason; the rest is stored.
func TestHTTPMetricsPartialSuccess(t *testing.T) {
	f := newFixture(t, nil)
	now := time.Now().Truncate(time.Millisecond)

	code, body := f.post(t, "/v1/metrics", contentTypeProto, marshalMetrics(t, sumMetrics("orders", now, pmetric.AggregationTemporalityCumulative, 1), false), false)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	// The same millisecond with another value: a duplicate timestamp.
	dup := sumMetrics("orders", now.Add(300*time.Microsecond), pmetric.AggregationTemporalityCumulative, 2)
	code, body = f.post(t, "/v1/metrics", contentTypeProto, marshalMetrics(t, dup, false), false)
	resp := pmetricotlp.NewExportResponse()
	if err := resp.UnmarshalProto(body); err != nil || code != http.StatusOK {
		t.Fatalf("status %d, %v", code, err)
	}
	if ps := resp.PartialSuccess(); ps.RejectedDataPoints() != 1 || !strings.Contains(ps.ErrorMessage(), collector.ReasonDuplicate) {
		t.Errorf("duplicate: rejected %d, message %q", ps.RejectedDataPoints(), ps.ErrorMessage())
	}

	// Two points of one series in one request within one millisecond, as
	// telemetrygen sends them: the second is reported, not dropped silently.
	batch := sumMetrics("gen", now, pmetric.AggregationTemporalityCumulative, 0)
	m2 := batch.ResourceMetrics().At(0).ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	sumMetrics("gen", now.Add(5*time.Microsecond), pmetric.AggregationTemporalityCumulative, 1).ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).CopyTo(m2)
	code, body = f.post(t, "/v1/metrics", contentTypeProto, marshalMetrics(t, batch, false), false)
	resp = pmetricotlp.NewExportResponse()
	if err := resp.UnmarshalProto(body); err != nil || code != http.StatusOK {
		t.Fatalf("status %d, %v", code, err)
	}
	if ps := resp.PartialSuccess(); ps.RejectedDataPoints() != 1 || !strings.Contains(ps.ErrorMessage(), "within the same request") {
		t.Errorf("in-request duplicate: rejected %d, message %q", ps.RejectedDataPoints(), ps.ErrorMessage())
	}
	if got := f.samples(t, "gen_total"); len(got) != 1 || got[0] != 0 {
		t.Errorf("gen_total = %v, want [0]", got)
	}

	// A point from 1970 next to a current one: rejected up front (and
	// target_info is not spread over fifty years of samples).
	old := sumMetrics("jobs", time.Unix(1, 0), pmetric.AggregationTemporalityCumulative, 1)
	sumMetrics("jobs", now, pmetric.AggregationTemporalityCumulative, 2).ResourceMetrics().MoveAndAppendTo(old.ResourceMetrics())
	code, body = f.post(t, "/v1/metrics", contentTypeProto, marshalMetrics(t, old, false), false)
	resp = pmetricotlp.NewExportResponse()
	if err := resp.UnmarshalProto(body); err != nil || code != http.StatusOK {
		t.Fatalf("status %d, %v", code, err)
	}
	if ps := resp.PartialSuccess(); ps.RejectedDataPoints() != 1 || !strings.Contains(ps.ErrorMessage(), "too_old: 1, first: a data point @1000 is older than ingest.max_sample_age (2h)") {
		t.Errorf("old point: rejected %d, message %q", ps.RejectedDataPoints(), ps.ErrorMessage())
	}
	if got := f.samples(t, "jobs_total"); len(got) != 1 || got[0] != 2 {
		t.Errorf("jobs_total = %v, want [2]", got)
	}

	delta := sumMetrics("bytes_sent", now, pmetric.AggregationTemporalityDelta, 10, 20)
	code, body = f.post(t, "/v1/metrics", contentTypeProto, marshalMetrics(t, delta, false), false)
	resp = pmetricotlp.NewExportResponse()
	if err := resp.UnmarshalProto(body); err != nil || code != http.StatusOK {
		t.Fatalf("status %d, %v", code, err)
	}
	if ps := resp.PartialSuccess(); ps.RejectedDataPoints() != 2 || !strings.Contains(ps.ErrorMessage(), "delta temporality (bytes_sent)") {
		t.Errorf("delta: rejected %d, message %q", ps.RejectedDataPoints(), ps.ErrorMessage())
	}
	if got := f.samples(t, "orders_total"); len(got) != 1 || got[0] != 1 {
		t.Errorf("orders_total = %v, want [1]", got)
	}
}

func TestHTTPSignals(t *testing.T) {
	f := newFixture(t, nil)
	td := ptrace.NewTraces()
	ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
	for range 5 {
		ss.Spans().AppendEmpty().SetName("GET /")
	}
	tb, _ := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if code, body := f.post(t, "/v1/traces", contentTypeProto, tb, false); code != http.StatusOK {
		t.Fatalf("traces: %d %s", code, body)
	}
	ld := plog.NewLogs()
	lrs := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
	for range 3 {
		lrs.AppendEmpty().Body().SetStr("hello")
	}
	lb, _ := plogotlp.NewExportRequestFromLogs(ld).MarshalJSON()
	if code, body := f.post(t, "/v1/logs", contentTypeJSON, lb, true); code != http.StatusOK {
		t.Fatalf("logs: %d %s", code, body)
	}
	if f.traces.spans != 5 || f.logs.records != 3 {
		t.Errorf("consumed %d spans and %d log records, want 5 and 3", f.traces.spans, f.logs.records)
	}
}

func TestHTTPBadInput(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.HTTP.MaxRequestBytes = 1024; c.HTTP.MaxDecompressedBytes = 4096 })
	big := bytes.Repeat([]byte{0}, 2048)
	bomb := marshalMetrics(t, sumMetrics(strings.Repeat("x", 5000), time.Now(), pmetric.AggregationTemporalityCumulative, 1), false)
	for _, tc := range []struct {
		name, method, path, ct string
		body                   []byte
		gz                     bool
		code                   int
		msg                    string
	}{
		{"get", http.MethodGet, "/v1/metrics", contentTypeProto, nil, false, http.StatusMethodNotAllowed, "OTLP/HTTP takes POST"},
		{"content type", http.MethodPost, "/v1/metrics", "text/plain", []byte("x"), false, http.StatusUnsupportedMediaType, "unsupported Content-Type"},
		{"corrupt proto", http.MethodPost, "/v1/metrics", contentTypeProto, []byte{0x0a, 0xff, 0xff}, false, http.StatusBadRequest, ""},
		{"corrupt json", http.MethodPost, "/v1/traces", contentTypeJSON, []byte(`{"resourceSpans":[`), false, http.StatusBadRequest, ""},
		{"corrupt gzip", http.MethodPost, "/v1/logs", contentTypeProto, []byte("not gzip"), false, http.StatusBadRequest, "gzip"},
		{"too large", http.MethodPost, "/v1/metrics", contentTypeProto, big, false, http.StatusRequestEntityTooLarge, "1024"},
		{"decompressed too large", http.MethodPost, "/v1/metrics", contentTypeProto, bomb, true, http.StatusRequestEntityTooLarge, "4096"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body
			var hdr string
			if tc.gz {
				var b bytes.Buffer
				w := gzip.NewWriter(&b)
				w.Write(body)
				w.Close()
				body, hdr = b.Bytes(), "gzip"
			}
			if tc.name == "corrupt gzip" {
				hdr = "gzip"
			}
			req, _ := http.NewRequest(tc.method, f.srv.URL+tc.path, bytes.NewReader(body))
			req.Header.Set("Content-Type", tc.ct)
			if hdr != "" {
				req.Header.Set("Content-Encoding", hdr)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.code, b)
			}
			var st spb.Status
			unmarshal := proto.Unmarshal
			if tc.ct == contentTypeJSON {
				unmarshal = protojson.Unmarshal
			}
			if err := unmarshal(b, &st); err != nil || st.Message == "" {
				t.Fatalf("body is not a google.rpc.Status: %v %q", err, b)
			}
			if !strings.Contains(st.Message, tc.msg) {
				t.Errorf("message %q does not mention %q", st.Message, tc.msg)
			}
		})
	}
}

// FuzzHTTP feeds arbitrary bodies to every OTLP/HTTP endpoint in both
// encodings: the receiver answers 200 or a 4xx, never panics or 5xx.
func FuzzHTTP(f *testing.F) {
	seed := sumMetrics("orders", time.Unix(1700000000, 0), pmetric.AggregationTemporalityCumulative, 1, 2)
	p, _ := pmetricotlp.NewExportRequestFromMetrics(seed).MarshalProto()
	j, _ := pmetricotlp.NewExportRequestFromMetrics(seed).MarshalJSON()
	f.Add(uint8(0), false, p)
	f.Add(uint8(0), true, j)
	f.Add(uint8(1), true, []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"x","traceId":"00000000000000000000000000000001","spanId":"0000000000000001","status":{"code":2}}]}]}]}`))
	f.Add(uint8(2), true, []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":17,"body":{"stringValue":"boom"}}]}]}]}`))
	fx := newFixture(f, nil)
	paths := []string{"/v1/metrics", "/v1/traces", "/v1/logs"}
	f.Fuzz(func(t *testing.T, which uint8, json bool, body []byte) {
		ct := contentTypeProto
		if json {
			ct = contentTypeJSON
		}
		req, _ := http.NewRequest(http.MethodPost, fx.srv.URL+paths[int(which)%3], bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("status %d for %q", resp.StatusCode, body)
		}
	})
}

// TestConfigMovedKeys: the time window moved to ingest:, for every
// receiver; the old keys are an error that says where they went.
func TestConfigMovedKeys(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.MaxSampleAge = model.Duration(time.Hour) }, "max_sample_age: this setting moved to ingest.max_sample_age, which applies to every receiver (remote_write, OTLP, Loki push): set max_sample_age: 1h under ingest: instead"},
		{func(c *Config) { c.MaxSampleFuture = model.Duration(time.Minute) }, "max_sample_future: this setting moved to ingest.max_sample_future"},
	} {
		c := DefaultConfig()
		tc.mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Error(err)
	}
}
