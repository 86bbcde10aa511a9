package loki

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alecthomas/units"
	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/vigilhq/vigil/collector"
	"github.com/vigilhq/vigil/collector/logmetrics"
)

type protoEntry struct {
	ts       time.Time
	line     string
	metadata [][2]string
}

// encodePush builds a push body with EncodeProto, streams in the given order.
func encodePush(streams map[string][]protoEntry, order ...string) []byte {
	var out []Stream
	for _, lbls := range order {
		ls, err := labelParser.ParseMetric(lbls)
		if err != nil {
			// An invalid label string is kept raw, to test the decoder's error.
			return rawStream(lbls)
		}
		st := Stream{Labels: ls}
		for _, e := range streams[lbls] {
			en := Entry{Time: e.ts, Line: e.line}
			for _, kv := range e.metadata {
				if en.Metadata == nil {
					en.Metadata = map[string]string{}
				}
				en.Metadata[kv[0]] = kv[1]
			}
			st.Entries = append(st.Entries, en)
		}
		out = append(out, st)
	}
	return EncodeProto(out)
}

func rawStream(lbls string) []byte {
	s := protowire.AppendTag(nil, 1, protowire.BytesType)
	s = protowire.AppendString(s, lbls)
	req := protowire.AppendTag(nil, 1, protowire.BytesType)
	return protowire.AppendBytes(req, s)
}

var t0 = time.Unix(1700000000, 123456789)

func TestDecodeProto(t *testing.T) {
	b := encodePush(map[string][]protoEntry{
		`{service="checkout", version="v2", level="error"}`: {
			{t0, "payment failed", [][2]string{{"trace_id", "abc"}}},
			{t0.Add(time.Second), "payment failed again", nil},
		},
		`{app="web"}`: {{t0, "GET / 200", nil}},
	}, `{service="checkout", version="v2", level="error"}`, `{app="web"}`)
	streams, err := DecodeProto(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(streams) != 2 {
		t.Fatalf("%d streams, want 2", len(streams))
	}
	s := streams[0]
	if s.Labels.Get("service") != "checkout" || s.Labels.Get("version") != "v2" || len(s.Entries) != 2 {
		t.Fatalf("stream 0 = %+v", s)
	}
	if e := s.Entries[0]; !e.Time.Equal(t0) || e.Line != "payment failed" || e.Metadata["trace_id"] != "abc" {
		t.Errorf("entry 0 = %+v", e)
	}
	if streams[1].Labels.Get("app") != "web" {
		t.Errorf("stream 1 labels = %s", streams[1].Labels)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		decode func([]byte) ([]Stream, error)
		in     []byte
		want   string
	}{
		{"proto truncated", DecodeProto, []byte{0x0a, 0x10, 0x01}, "PushRequest"},
		{"proto bad labels", DecodeProto, encodePush(map[string][]protoEntry{`{a=`: {{t0, "x", nil}}}, `{a=`), "labels"},
		{"proto wrong wire type", DecodeProto, []byte{0x08, 0x01}, "wrong wire type"},
		{"json syntax", DecodeJSON, []byte(`{"streams": [`), "push body"},
		{"json tuple", DecodeJSON, []byte(`{"streams": [{"stream": {"a": "b"}, "values": [["1"]]}]}`), "values[0]"},
		{"json timestamp", DecodeJSON, []byte(`{"streams": [{"stream": {"a": "b"}, "values": [["yesterday", "x"]]}]}`), "nanoseconds"},
		{"json metadata", DecodeJSON, []byte(`{"streams": [{"stream": {"a": "b"}, "values": [["1", "x", {"k": 1}]]}]}`), "structured metadata"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.decode(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestLevelDetection(t *testing.T) {
	for _, tc := range []struct {
		labels map[string]string
		line   string
		want   string
	}{
		{map[string]string{"level": "ERROR"}, "anything", "error"},
		{map[string]string{"detected_level": "warn"}, "anything", "warn"},
		{nil, `ts=2024 level=error msg="db down"`, "error"},
		{nil, `{"time":"x","level":"fatal","msg":"bye"}`, "fatal"},
		{nil, `2024-01-01T00:00:00Z ERROR payment failed`, "error"},
		{nil, `[WARN] disk almost full`, "warn"},
		{nil, `GET /healthz 200`, "unknown"},
	} {
		got := levelFromLabels(func(k string) string { return tc.labels[k] })
		if got == "" {
			got = levelFromLine(tc.line)
		}
		if got != tc.want {
			t.Errorf("labels %v line %q: level %q, want %q", tc.labels, tc.line, got, tc.want)
		}
	}
}

type recorder struct {
	mu   sync.Mutex
	recs []logmetrics.Record
}

func (r *recorder) Observe(rec logmetrics.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
}

func newServer(t *testing.T) (*httptest.Server, *recorder) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.MaxRequestBytes = 4 * units.KiB
	cfg.MaxDecompressedBytes = 16 * units.KiB
	rec := &recorder{}
	r, err := New(cfg, rec, collector.NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r.now = func() time.Time { return t0.Add(time.Minute) } // the pushes' entries are recent
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv, rec
}

// TestReceiverValidatesLikeLoki: entries Loki's distributor would refuse
// are refused with its wording and 400, and the valid entries of the same
// push are counted.
func TestReceiverValidatesLikeLoki(t *testing.T) {
	ns := func(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }
	wide := map[string]string{}
	for i := range 30 {
		wide["l"+strconv.Itoa(i)] = "v"
	}
	wideJSON, _ := json.Marshal(wide)
	for _, tc := range []struct {
		name, body string
		code       int
		msg        string
		records    int
	}{
		{"too old", `{"streams":[{"stream":{"app":"x"},"values":[["` + ns(t0.Add(-3*time.Hour)) + `","old"],["` + ns(t0) + `","new"]]}]}`,
			400, `1 of 2 entries rejected; too_old: 1, first: entry for stream '{app="x"}' has timestamp too old: 2023-11-14T19:13:20Z, oldest acceptable timestamp is: 2023-11-14T20:14:20Z`, 1},
		{"too new", `{"streams":[{"stream":{"app":"x"},"values":[["` + ns(t0.Add(time.Hour)) + `","ahead"]]}]}`,
			400, `too_far_in_future: 1, first: entry for stream '{app="x"}' has timestamp too new: 2023-11-14T23:13:20Z`, 0},
		{"too many labels", `{"streams":[{"stream":` + string(wideJSON[:len(wideJSON)-1]) + `,"app":"x"},"values":[["` + ns(t0) + `","a"],["` + ns(t0) + `","b"]]}]}`,
			400, `2 of 2 entries rejected; max_label_names_per_series: 2, first: entry for stream '{app="x", l0="v"`, 0},
		{"label value too long", `{"streams":[{"stream":{"app":"` + strings.Repeat("x", 2049) + `"},"values":[["` + ns(t0) + `","a"]]}]}`,
			400, `label_value_too_long: 1, first: stream '{app="xxx`, 0},
		{"nesting too deep", `{"streams":[{"stream":{"app":"x"},"values":[["` + ns(t0) + `","a",` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `]]}]}`,
			400, "JSON objects and arrays nest deeper than the limit of 32 levels", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, rec := newServer(t)
			resp, err := http.Post(srv.URL, "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.msg) {
				t.Fatalf("got %d %q, want %d containing %q", resp.StatusCode, b, tc.code, tc.msg)
			}
			if len(rec.recs) != tc.records {
				t.Errorf("%d records counted, want %d", len(rec.recs), tc.records)
			}
		})
	}

	t.Run("line not UTF-8 (protobuf)", func(t *testing.T) {
		srv, rec := newServer(t)
		body := encodePush(map[string][]protoEntry{`{app="x"}`: {{t0, "bad \xff line", nil}, {t0.Add(time.Millisecond), "good", nil}}}, `{app="x"}`)
		resp, err := http.Post(srv.URL, "application/x-protobuf", bytes.NewReader(snappy.Encode(nil, body)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := `1 of 2 entries rejected; invalid_utf8: 1, first: entry for stream '{app="x"}' has a line that is not valid UTF-8`; resp.StatusCode != 400 || !strings.Contains(string(b), want) {
			t.Fatalf("got %d %q, want 400 containing %q", resp.StatusCode, b, want)
		}
		if len(rec.recs) != 1 || rec.recs[0].Body != "good" {
			t.Errorf("records = %+v, want the valid line only", rec.recs)
		}
	})
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func TestReceiver(t *testing.T) {
	proto := encodePush(map[string][]protoEntry{
		`{service="checkout", version="v2"}`: {{t0, "level=error msg=boom", [][2]string{{"traceID", "t1"}}}, {t0, "level=info msg=ok", nil}},
	}, `{service="checkout", version="v2"}`)
	jsonBody := []byte(`{"streams":[{"stream":{"service_name":"cart","version":"v7","level":"warn"},"values":[["1700000000000000000","cache miss"],["1700000000000000001","cache miss",{"trace_id":"t2"}]]}]}`)
	large := snappy.Encode(nil, bytes.Repeat([]byte{0x0a, 0x00}, 10*1024))

	for _, tc := range []struct {
		name, method, ct, enc string
		body                  []byte
		code                  int
		msg                   string
		records               int
	}{
		{"proto snappy", http.MethodPost, "application/x-protobuf", "", snappy.Encode(nil, proto), http.StatusNoContent, "", 2},
		{"json", http.MethodPost, "application/json", "", jsonBody, http.StatusNoContent, "", 2},
		{"json gzip", http.MethodPost, "application/json", "gzip", gz(jsonBody), http.StatusNoContent, "", 2},
		{"get", http.MethodGet, "", "", nil, http.StatusMethodNotAllowed, "POST", 0},
		{"corrupt snappy", http.MethodPost, "application/x-protobuf", "", []byte("not snappy"), http.StatusBadRequest, "snappy", 0},
		{"corrupt proto", http.MethodPost, "application/x-protobuf", "", snappy.Encode(nil, []byte{0x0a, 0x7f}), http.StatusBadRequest, "decode Loki protobuf push", 0},
		{"corrupt json", http.MethodPost, "application/json", "", []byte(`{"streams":`), http.StatusBadRequest, "decode Loki JSON push", 0},
		{"content type", http.MethodPost, "text/plain", "", []byte("x"), http.StatusUnsupportedMediaType, "unsupported Content-Type", 0},
		{"encoding", http.MethodPost, "application/json", "br", jsonBody, http.StatusUnsupportedMediaType, "Content-Encoding", 0},
		{"too large", http.MethodPost, "application/json", "", bytes.Repeat([]byte(" "), 5000), http.StatusRequestEntityTooLarge, "", 0},
		{"decompressed too large", http.MethodPost, "application/x-protobuf", "", large, http.StatusRequestEntityTooLarge, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, rec := newServer(t)
			req, _ := http.NewRequest(tc.method, srv.URL+"/loki/api/v1/push", bytes.NewReader(tc.body))
			if tc.ct != "" {
				req.Header.Set("Content-Type", tc.ct)
			}
			if tc.enc != "" {
				req.Header.Set("Content-Encoding", tc.enc)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.msg) {
				t.Fatalf("status %d %q, want %d mentioning %q", resp.StatusCode, b, tc.code, tc.msg)
			}
			if len(rec.recs) != tc.records {
				t.Fatalf("%d records observed, want %d", len(rec.recs), tc.records)
			}
		})
	}

	t.Run("identity and level", func(t *testing.T) {
		srv, rec := newServer(t)
		resp, err := http.Post(srv.URL, "application/x-protobuf", bytes.NewReader(snappy.Encode(nil, proto)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		r := rec.recs[0]
		if r.Identity.Service != "checkout" || r.Identity.Version != "v2" || r.Severity != "error" || r.TraceID != "t1" || r.Body != "level=error msg=boom" {
			t.Errorf("record = %+v", r)
		}
		if rec.recs[1].Severity != "info" {
			t.Errorf("second record severity = %q", rec.recs[1].Severity)
		}
	})

	// log_metrics dimensions come from the stream's labels, then the
	// entry's structured metadata, by attribute or label name.
	t.Run("dimensions", func(t *testing.T) {
		srv, rec := newServer(t)
		body := encodePush(map[string][]protoEntry{
			`{service="cart", cluster="eu-1", k8s_cluster_name="prod"}`: {
				{t0, "level=error", [][2]string{{"cluster", "ignored"}, {"pod", "cart-1"}}},
				{t0, "level=error", nil},
			},
		}, `{service="cart", cluster="eu-1", k8s_cluster_name="prod"}`)
		resp, err := http.Post(srv.URL, "application/x-protobuf", bytes.NewReader(snappy.Encode(nil, body)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if len(rec.recs) != 2 {
			t.Fatalf("%d records", len(rec.recs))
		}
		for _, tc := range []struct {
			rec       int
			attr, val string
			ok        bool
		}{
			{0, "cluster", "eu-1", true},
			{0, "k8s.cluster.name", "prod", true},
			{0, "pod", "cart-1", true},
			{1, "pod", "", false},
			{1, "zone", "", false},
		} {
			if v, ok := rec.recs[tc.rec].Lookup(tc.attr); v != tc.val || ok != tc.ok {
				t.Errorf("record %d: Lookup(%q) = %q, %v; want %q, %v", tc.rec, tc.attr, v, ok, tc.val, tc.ok)
			}
		}
	})
}

func FuzzDecodeProto(f *testing.F) {
	f.Add(encodePush(map[string][]protoEntry{`{a="b"}`: {{t0, "x", [][2]string{{"k", "v"}}}}}, `{a="b"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		streams, err := DecodeProto(b)
		if err != nil && streams != nil {
			t.Fatal("streams returned with an error")
		}
	})
}

func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(`{"streams":[{"stream":{"a":"b"},"values":[["1","x",{"k":"v"}]]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		streams, err := DecodeJSON(b)
		if err != nil && streams != nil {
			t.Fatal("streams returned with an error")
		}
	})
}

// FuzzPush posts arbitrary bodies as JSON or snappy protobuf: the receiver
// answers 204 or a 4xx, never a 5xx or a panic, whatever the nesting.
func FuzzPush(f *testing.F) {
	f.Add(false, snappy.Encode(nil, encodePush(map[string][]protoEntry{`{a="b"}`: {{t0, "x", nil}}}, `{a="b"}`)))
	cfg := DefaultConfig()
	r, err := New(cfg, &recorder{}, collector.NewMetrics(nil), slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	r.now = func() time.Time { return t0 }
	f.Fuzz(func(t *testing.T, json bool, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/loki/api/v1/push", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-protobuf")
		if json {
			req.Header.Set("Content-Type", "application/json")
		}
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("status %d: %s", w.Code, w.Body.String())
		}
	})
}
