package remotewrite

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/collector"
	"github.com/vigilhq/vigil/collector/hotpath"
	"github.com/vigilhq/vigil/storage"
)

// newTestReceiver serves a receiver backed by a real TSDB in a temp dir.
func newTestReceiver(t *testing.T, cfg Config) (*httptest.Server, *storage.Storage, *collector.Metrics) {
	t.Helper()
	scfg := storage.DefaultConfig()
	scfg.Path = t.TempDir()
	st, err := storage.Open(scfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	m := collector.NewMetrics(prometheus.NewRegistry())
	rcv, err := New(cfg, newPipeline(t, st), st.Metadata(), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	return srv, st, m
}

// newPipeline is the hot path, with its default ingest limits, in front of st.
func newPipeline(t testing.TB, st hotpath.Storage) *hotpath.Pipeline {
	t.Helper()
	p, err := hotpath.New(hotpath.DefaultConfig(), st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func post(t *testing.T, url string, body []byte, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	for k, v := range header {
		if v == "" {
			req.Header.Del(k)
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp, b.String()
}

func encodeV1(t *testing.T, req *prompb.WriteRequest) []byte {
	t.Helper()
	b, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, b)
}

// selectAll returns every float sample of the series matching the selector, by series.
func selectAll(t *testing.T, st *storage.Storage, selector string) map[string][]float64 {
	t.Helper()
	ms, err := parseSelector(selector)
	if err != nil {
		t.Fatal(err)
	}
	q, err := st.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	out := map[string][]float64{}
	set := q.Select(context.Background(), false, nil, ms...)
	for set.Next() {
		s := set.At()
		it := s.Iterator(nil)
		for it.Next() != 0 {
			_, v := it.At()
			out[s.Labels().String()] = append(out[s.Labels().String()], v)
		}
	}
	if err := set.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func parseSelector(s string) ([]*labels.Matcher, error) {
	name, rest, _ := strings.Cut(s, "{")
	ms := []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, model.MetricNameLabel, name)}
	rest = strings.TrimSuffix(rest, "}")
	if rest != "" {
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, k, strings.Trim(v, `"`)))
		}
	}
	return ms, nil
}

func series(name string, kv ...string) []prompb.Label {
	ls := []prompb.Label{{Name: "__name__", Value: name}}
	for i := 0; i+1 < len(kv); i += 2 {
		ls = append(ls, prompb.Label{Name: kv[i], Value: kv[i+1]})
	}
	return ls
}

func TestReceiverV1StoresAndAcknowledges(t *testing.T) {
	srv, st, m := newTestReceiver(t, DefaultConfig())
	now := time.Now().UnixMilli()
	req := &prompb.WriteRequest{
		Timeseries: []prompb.TimeSeries{
			{Labels: series("http_requests_total", "job", "api", "instance", "a:80"), Samples: []prompb.Sample{{Value: 1, Timestamp: now - 2000}, {Value: 3, Timestamp: now - 1000}}},
			// Unsorted labels and an empty-valued label, which is the same as no label.
			{Labels: []prompb.Label{{Name: "job", Value: "api"}, {Name: "__name__", Value: "up"}, {Name: "zone", Value: ""}}, Samples: []prompb.Sample{{Value: 1, Timestamp: now}}},
		},
		Metadata: []prompb.MetricMetadata{{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "http_requests_total", Help: "Requests served."}},
	}
	resp, body := post(t, srv.URL, encodeV1(t, req), nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	got := selectAll(t, st, `http_requests_total{job="api"}`)
	if want := []float64{1, 3}; len(got) != 1 || !equal(got[`{__name__="http_requests_total", instance="a:80", job="api"}`], want) {
		t.Fatalf("stored %v, want one series with %v", got, want)
	}
	if got := selectAll(t, st, `up`); len(got[`{__name__="up", job="api"}`]) != 1 {
		t.Fatalf("up stored as %v", got)
	}
	md := st.Metadata().Get("http_requests_total", 0, 0)
	if len(md["http_requests_total"]) != 1 || md["http_requests_total"][0].Type != model.MetricTypeCounter || md["http_requests_total"][0].Help != "Requests served." {
		t.Fatalf("metadata %+v", md)
	}
	if v := testutil.ToFloat64(m.Samples.WithLabelValues(ReceiverName, "float")); v != 3 {
		t.Fatalf("vigil_ingest_samples_total = %v, want 3", v)
	}
}

func equal(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestReceiverV2(t *testing.T) {
	srv, st, _ := newTestReceiver(t, DefaultConfig())
	now := time.Now().UnixMilli()
	syms := writev2.NewSymbolTable()
	req := &writev2.Request{Timeseries: []writev2.TimeSeries{{
		LabelsRefs: syms.SymbolizeLabels(labels.FromStrings("__name__", "queue_depth", "queue", "orders"), nil),
		Samples:    []writev2.Sample{{Value: 7, Timestamp: now - 1000}, {Value: 9, Timestamp: now}},
		Histograms: nil,
		Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, HelpRef: syms.Symbolize("Jobs waiting."), UnitRef: syms.Symbolize("jobs")},
	}, {
		LabelsRefs: syms.SymbolizeLabels(labels.FromStrings("__name__", "latency_seconds", "route", "/"), nil),
		Histograms: []writev2.Histogram{writev2.FromIntHistogram(0, now, genHistogram(rand.New(rand.NewPCG(1, 1))))},
	}}}
	req.Symbols = syms.Symbols()
	b, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	resp, body := post(t, srv.URL, snappy.Encode(nil, b), map[string]string{
		"Content-Type":                      "application/x-protobuf;proto=io.prometheus.write.v2.Request",
		"X-Prometheus-Remote-Write-Version": "2.0.0",
	})
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	for h, want := range map[string]string{
		"X-Prometheus-Remote-Write-Samples-Written":    "2",
		"X-Prometheus-Remote-Write-Histograms-Written": "1",
		"X-Prometheus-Remote-Write-Exemplars-Written":  "0",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if got := selectAll(t, st, "queue_depth"); !equal(got[`{__name__="queue_depth", queue="orders"}`], []float64{7, 9}) {
		t.Fatalf("stored %v", got)
	}
	md := st.Metadata().Get("queue_depth", 0, 0)["queue_depth"]
	if len(md) != 1 || md[0].Type != model.MetricTypeGauge || md[0].Unit != "jobs" || md[0].Help != "Jobs waiting." {
		t.Fatalf("metadata %+v", md)
	}
}

// TestReceiverSenderV2 sends with client_golang's remote write 2.0 sender.
func TestReceiverSenderV2(t *testing.T) {
	srv, st, _ := newTestReceiver(t, DefaultConfig())
	api, err := remoteapi.NewAPI(srv.URL, remoteapi.WithAPIPath("/"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	syms := writev2.NewSymbolTable()
	req := &writev2.Request{Timeseries: []writev2.TimeSeries{{
		LabelsRefs: syms.SymbolizeLabels(labels.FromStrings("__name__", "jobs_done_total", "worker", "w1"), nil),
		Samples:    []writev2.Sample{{Value: 42, Timestamp: now}},
		Exemplars:  []writev2.Exemplar{{LabelsRefs: syms.SymbolizeLabels(labels.FromStrings("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"), nil), Value: 1, Timestamp: now}},
		Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, HelpRef: syms.Symbolize("Jobs done.")},
	}, {
		// The same strings again: interned once in the symbol table.
		LabelsRefs: syms.SymbolizeLabels(labels.FromStrings("__name__", "jobs_done_total", "worker", "w2"), nil),
		Samples:    []writev2.Sample{{Value: 40, Timestamp: now}},
		Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, HelpRef: syms.Symbolize("Jobs done.")},
	}}}
	req.Symbols = syms.Symbols()
	stats, err := api.Write(context.Background(), remoteapi.WriteV2MessageType, req)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Samples != 2 || stats.Exemplars != 1 {
		t.Fatalf("written stats %+v, want 2 samples and 1 exemplar", stats)
	}
	if got := selectAll(t, st, "jobs_done_total"); len(got) != 2 {
		t.Fatalf("stored %v", got)
	}
	if md := st.Metadata().Get("jobs_done_total", 0, 0)["jobs_done_total"]; len(md) != 1 || md[0].Type != model.MetricTypeCounter || md[0].Help != "Jobs done." {
		t.Fatalf("metadata %+v", md)
	}
}

func TestReceiverRejects(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxRequestBytes = 4096
	cfg.MaxDecompressedBytes = 16384
	srv, st, m := newTestReceiver(t, cfg)
	now := time.Now().UnixMilli()

	// Seed a series so that older samples are out of order.
	seed := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: series("temp", "room", "a"), Samples: []prompb.Sample{{Value: 20, Timestamp: now}}}}}
	if resp, body := post(t, srv.URL, encodeV1(t, seed), nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("seed: %d %s", resp.StatusCode, body)
	}

	big := make([]byte, 20000)
	for _, tc := range []struct {
		name     string
		body     []byte
		header   map[string]string
		wantCode int
		wantMsg  string
	}{
		{"out of order keeps the valid sample", encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			{Labels: series("temp", "room", "a"), Samples: []prompb.Sample{{Value: 19, Timestamp: now - 60000}}},
			{Labels: series("temp", "room", "b"), Samples: []prompb.Sample{{Value: 22, Timestamp: now}}},
		}}), nil, 400, "1 of 2 samples rejected; out_of_order: 1, first: {__name__=\"temp\", room=\"a\"}"},
		{"duplicate timestamp with a new value", encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			{Labels: series("temp", "room", "a"), Samples: []prompb.Sample{{Value: 99, Timestamp: now}}},
		}}), nil, 400, "duplicate_timestamp: 1"},
		{"too far in the future", encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			{Labels: series("temp", "room", "c"), Samples: []prompb.Sample{{Value: 1, Timestamp: now + int64(time.Hour/time.Millisecond)}}},
		}}), nil, 400, "too_far_in_future: 1, first: {__name__=\"temp\", room=\"c\"}"},
		{"older than max_sample_age", encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			{Labels: series("temp", "room", "old"), Samples: []prompb.Sample{{Value: 1, Timestamp: now - int64(3*time.Hour/time.Millisecond)}}},
		}}), nil, 400, "too_old: 1, first: {__name__=\"temp\", room=\"old\"}"},
		{"two values at one timestamp within the request", encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			{Labels: series("dup", "room", "a"), Samples: []prompb.Sample{{Value: 1, Timestamp: now}, {Value: 2, Timestamp: now}}},
		}}), nil, 400, "1 of 2 samples rejected; duplicate_timestamp: 1, first: {__name__=\"dup\", room=\"a\"} @" + strconv.FormatInt(now, 10) + ": duplicate sample for timestamp"},
		{"the same series twice in the request, conflicting", encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			{Labels: series("dup", "room", "b"), Samples: []prompb.Sample{{Value: 1, Timestamp: now}}},
			{Labels: series("dup", "room", "b"), Samples: []prompb.Sample{{Value: 2, Timestamp: now}}},
		}}), nil, 400, "1 of 2 samples rejected; duplicate_timestamp: 1"},
		{"out of order within the request", encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			{Labels: series("dup", "room", "c"), Samples: []prompb.Sample{{Value: 1, Timestamp: now}, {Value: 2, Timestamp: now - 1000}}},
		}}), nil, 400, "1 of 2 samples rejected; out_of_order: 1"},
		{"an exact repeat is harmless", encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			{Labels: series("dup", "room", "d"), Samples: []prompb.Sample{{Value: 1, Timestamp: now}, {Value: 1, Timestamp: now}}},
		}}), nil, 204, ""},
		{"more labels than max_label_names_per_series", encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			{Labels: series("wide", manyLabels(30)...), Samples: []prompb.Sample{{Value: 1, Timestamp: now}}},
		}}), nil, 400, "max_label_names_per_series: 1, first: {__name__=\"wide\""},
		{"label value longer than max_label_value_length", encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			{Labels: series("long", "path", strings.Repeat("x", 2049)), Samples: []prompb.Sample{{Value: 1, Timestamp: now}}},
		}}), nil, 400, "label_value_too_long: 1"},
		{"label name longer than max_label_name_length", encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			{Labels: series("long", strings.Repeat("n", 1025), "v"), Samples: []prompb.Sample{{Value: 1, Timestamp: now}}},
		}}), nil, 400, "label_name_too_long: 1"},
		{"missing metric name", encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			{Labels: []prompb.Label{{Name: "job", Value: "x"}}, Samples: []prompb.Sample{{Value: 1, Timestamp: now}}},
		}}), nil, 400, `no metric name: the __name__ label is missing or empty in {job="x"}`},
		{"duplicate label", encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			{Labels: series("m", "job", "x", "job", "y"), Samples: []prompb.Sample{{Value: 1, Timestamp: now}}},
		}}), nil, 400, `duplicate label name "job"`},
		{"invalid UTF-8 label value", encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			{Labels: series("m", "path", "\xff\xfe"), Samples: []prompb.Sample{{Value: 1, Timestamp: now}}},
		}}), nil, 400, `label "path" has a value that is not valid UTF-8`},
		{"empty label name", encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			{Labels: series("m", "", "v"), Samples: []prompb.Sample{{Value: 1, Timestamp: now}}},
		}}), nil, 400, `empty label name (with value "v")`},
		{"body over the limit", snappy.Encode(nil, randomBytes(8000)), nil, 413, "exceeds the limit of 4096 bytes"},
		{"decompressed size over the limit", snappy.Encode(nil, big), nil, 413, "decompressed body of 20000 bytes exceeds the limit of 16384 bytes"},
		{"corrupt snappy", []byte("not snappy at all"), nil, 400, "snappy: s2: corrupt input"},
		{"corrupt protobuf", snappy.Encode(nil, []byte{0x0a, 0x05, 0x01}), nil, 400, "decode remote write 1.0 request: WriteRequest.timeseries[0]: unexpected EOF"},
		{"unsupported proto message", encodeV1(t, seed), map[string]string{"Content-Type": "application/x-protobuf;proto=io.prometheus.write.v3.Request"}, 415, "unknown type for remote write protobuf message"},
		{"unsupported content type", encodeV1(t, seed), map[string]string{"Content-Type": "application/json"}, 415, "expected application/x-protobuf"},
		{"unsupported encoding", encodeV1(t, seed), map[string]string{"Content-Encoding": "gzip"}, 415, "gzip encoding (compression) is not accepted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, srv.URL, tc.body, tc.header)
			if resp.StatusCode != tc.wantCode || !strings.Contains(body, tc.wantMsg) {
				t.Fatalf("got %d %q, want %d containing %q", resp.StatusCode, body, tc.wantCode, tc.wantMsg)
			}
		})
	}
	// The valid sample of the partially rejected request was kept.
	if got := selectAll(t, st, `temp{room="b"}`); len(got) != 1 {
		t.Fatalf("valid sample of a partly rejected request was lost: %v", got)
	}
	if got := selectAll(t, st, `temp{room="a"}`); !equal(got[`{__name__="temp", room="a"}`], []float64{20}) {
		t.Fatalf("room a = %v, want only the seed sample", got)
	}
	for reason, want := range map[string]float64{
		collector.ReasonOutOfOrder: 2, collector.ReasonDuplicate: 3, collector.ReasonTooOld: 1, collector.ReasonFuture: 1,
		collector.ReasonMaxLabelNames: 1, collector.ReasonLabelValueTooLong: 1, collector.ReasonLabelNameTooLong: 1, collector.ReasonInvalidLabels: 4,
	} {
		if v := testutil.ToFloat64(m.Rejected.WithLabelValues(ReceiverName, reason)); v != want {
			t.Errorf("rejected %s = %v, want %v", reason, v, want)
		}
	}
	if v := testutil.ToFloat64(m.RefusedRequests.WithLabelValues(ReceiverName, collector.RefusedTooLarge)); v != 2 {
		t.Errorf("refused too_large = %v, want 2", v)
	}
	// The first of two conflicting samples is kept, as Prometheus keeps it.
	if got := selectAll(t, st, `dup{room="a"}`); !equal(got[`{__name__="dup", room="a"}`], []float64{1}) {
		t.Errorf("dup{room=a} = %v, want [1]", got)
	}
	if got := selectAll(t, st, `dup{room="d"}`); !equal(got[`{__name__="dup", room="d"}`], []float64{1}) {
		t.Errorf("dup{room=d} = %v, want [1]", got)
	}
}

// manyLabels is n label pairs l0=v, l1=v, ...
func manyLabels(n int) []string {
	var kv []string
	for i := range n {
		kv = append(kv, "l"+strconv.Itoa(i), "v")
	}
	return kv
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// failingStorage makes every commit fail as a broken disk would.
type failingStorage struct{ *storage.Storage }

func (f failingStorage) AppenderV2(ctx context.Context) promstorage.AppenderV2 {
	return failingAppender{f.Storage.AppenderV2(ctx)}
}

type failingAppender struct{ promstorage.AppenderV2 }

func (failingAppender) Commit() error { return errDisk }

var errDisk = &diskError{}

type diskError struct{}

func (*diskError) Error() string { return "write /data/wal/00000001: no space left on device" }

// TestReceiverStorageFailureIs500 checks that a storage failure is a
// retryable 500, never a 2xx (the sender must not drop the data). Storage
// here is real; only its Commit is made to fail, as a full disk would.
func TestReceiverStorageFailureIs500(t *testing.T) {
	scfg := storage.DefaultConfig()
	scfg.Path = t.TempDir()
	st, err := storage.Open(scfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rcv, err := New(DefaultConfig(), newPipeline(t, failingStorage{st}), nil, collector.NewMetrics(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	body := encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: series("m"), Samples: []prompb.Sample{{Value: 1, Timestamp: time.Now().UnixMilli()}}}}})
	resp, msg := post(t, srv.URL, body, nil)
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(msg, "no space left on device") {
		t.Fatalf("got %d %q, want 500 naming the storage error", resp.StatusCode, msg)
	}
}

// FuzzReceiver posts arbitrary bodies: the receiver must answer with a 2xx
// or a 4xx, never a 5xx or a panic.
func FuzzReceiver(f *testing.F) {
	rng := rand.New(rand.NewPCG(9, 9))
	for i := range 3 {
		b, _ := genV1(rng, i+1).Marshal()
		f.Add(snappy.Encode(nil, b), false)
		b2, _ := genV2(rng, i+1).Marshal()
		f.Add(snappy.Encode(nil, b2), true)
	}
	f.Add([]byte("garbage"), false)
	scfg := storage.DefaultConfig()
	scfg.Path = f.TempDir()
	st, err := storage.Open(scfg, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	rcv, err := New(DefaultConfig(), newPipeline(f, st), st.Metadata(), collector.NewMetrics(nil), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, v2 bool) {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
		req.Header.Set("Content-Encoding", "snappy")
		if v2 {
			req.Header.Set("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request")
		} else {
			req.Header.Set("Content-Type", "application/x-protobuf")
		}
		w := httptest.NewRecorder()
		rcv.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("status %d for fuzzed body: %s", w.Code, w.Body.String())
		}
	})
}
