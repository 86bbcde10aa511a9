package query

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/storage"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// base is the fixed time the test data ends at (2026-01-01T00:00:00Z).
var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// newTestAPI serves the API over a real TSDB holding a small fixed data set.
func newTestAPI(t *testing.T, qcfg Config) *httptest.Server {
	t.Helper()
	scfg := storage.DefaultConfig()
	scfg.Path = t.TempDir()
	st, err := storage.Open(scfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })

	app := st.AppenderV2(context.Background())
	add := func(ls labels.Labels, tsMinutes int, v float64) promstorage.SeriesRef {
		ref, err := app.Append(0, ls, 0, base.Add(time.Duration(tsMinutes)*time.Minute).UnixMilli(), v, nil, nil, promstorage.AOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return ref
	}
	for i := -30; i <= 0; i++ {
		add(labels.FromStrings("__name__", "http_requests_total", "job", "api", "code", "200"), i, float64(100+i*60))
		add(labels.FromStrings("__name__", "http_requests_total", "job", "api", "code", "500"), i, float64(10+i*3))
		add(labels.FromStrings("__name__", "queue_depth", "queue", "orders"), i, float64((i+30)%7))
	}
	for i := -10; i <= 0; i++ {
		h := &histogram.Histogram{Count: uint64(10 * (i + 11)), Sum: float64(i+11) * 2.5, Schema: 0,
			PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{int64(4 * (i + 11)), int64(2 * (i + 11))}}
		if _, err := app.Append(0, labels.FromStrings("__name__", "rpc_duration_seconds", "service", "checkout"), 0, base.Add(time.Duration(i)*time.Minute).UnixMilli(), 0, h, nil, promstorage.AOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ref := add(labels.FromStrings("__name__", "build_info", "version", "v2"), 0, 1)
	if ea, ok := app.(promstorage.ExemplarAppenderV2); ok {
		if _, err := ea.AppendExemplars(ref, labels.FromStrings("__name__", "build_info", "version", "v2"), []exemplar.Exemplar{{Labels: labels.FromStrings("trace_id", "abc123"), Value: 1, Ts: base.UnixMilli(), HasTs: true}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	st.Metadata().Set("http_requests_total", metadata.Metadata{Type: model.MetricTypeCounter, Help: "Requests served."})
	st.Metadata().Set("queue_depth", metadata.Metadata{Type: model.MetricTypeGauge, Help: "Jobs waiting.", Unit: "jobs"})

	engine, err := NewEngine(qcfg, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	api, err := NewAPI(APIConfig{Engine: engine, Storage: st, Metadata: st.Metadata(), TSDB: st,
		Build: BuildInfo{Version: "1.2.3", Revision: "abc", Branch: "main", GoVersion: "go1.26"}})
	if err != nil {
		t.Fatal(err)
	}
	api.now = func() time.Time { return base }
	mux := auth.NewMux(nil, nil)
	api.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func ts(d time.Duration) string { return fmt.Sprint(base.Add(d).Unix()) }

// TestAPIGolden checks the status code and exact JSON of each endpoint
// against testdata/*.json (go test ./query -run TestAPIGolden -update rewrites them).
func TestAPIGolden(t *testing.T) {
	srv := newTestAPI(t, DefaultConfig())
	for _, tc := range []struct {
		name     string
		method   string
		path     string
		params   url.Values
		wantCode int
	}{
		{"query_vector", "GET", "/api/v1/query", url.Values{"query": {`sort(rate(http_requests_total[5m]))`}, "time": {ts(0)}}, 200},
		{"query_post_form", "POST", "/api/v1/query", url.Values{"query": {`sum by (job) (http_requests_total)`}, "time": {ts(-time.Minute)}}, 200},
		{"query_scalar", "GET", "/api/v1/query", url.Values{"query": {`scalar(sum(queue_depth)) * 2`}, "time": {ts(0)}}, 200},
		{"query_string", "GET", "/api/v1/query", url.Values{"query": {`"vigil"`}, "time": {ts(0)}}, 200},
		{"query_native_histogram", "GET", "/api/v1/query", url.Values{"query": {`rpc_duration_seconds`}, "time": {ts(0)}}, 200},
		{"query_histogram_quantile", "GET", "/api/v1/query", url.Values{"query": {`histogram_quantile(0.9, rate(rpc_duration_seconds[5m]))`}, "time": {ts(0)}}, 200},
		{"query_limit", "GET", "/api/v1/query", url.Values{"query": {`http_requests_total`}, "time": {ts(0)}, "limit": {"1"}}, 200},
		{"query_warning", "GET", "/api/v1/query", url.Values{"query": {`rate(queue_depth[5m])`}, "time": {ts(0)}}, 200},
		{"query_range", "GET", "/api/v1/query_range", url.Values{"query": {`queue_depth`}, "start": {ts(-5 * time.Minute)}, "end": {ts(0)}, "step": {"60"}}, 200},
		{"query_range_rfc3339", "POST", "/api/v1/query_range", url.Values{"query": {`sum(rate(http_requests_total[2m]))`}, "start": {"2025-12-31T23:57:00Z"}, "end": {"2026-01-01T00:00:00Z"}, "step": {"1m"}}, 200},
		{"query_range_histograms", "GET", "/api/v1/query_range", url.Values{"query": {`rpc_duration_seconds`}, "start": {ts(-2 * time.Minute)}, "end": {ts(0)}, "step": {"1m"}}, 200},
		{"series", "GET", "/api/v1/series", url.Values{"match[]": {`http_requests_total`, `{queue="orders"}`}, "start": {ts(-time.Hour)}, "end": {ts(0)}}, 200},
		{"series_limit", "GET", "/api/v1/series", url.Values{"match[]": {`http_requests_total`}, "limit": {"1"}}, 200},
		{"labels", "GET", "/api/v1/labels", nil, 200},
		{"labels_match", "POST", "/api/v1/labels", url.Values{"match[]": {`queue_depth`}}, 200},
		{"label_values", "GET", "/api/v1/label/code/values", nil, 200},
		{"label_values_name", "GET", "/api/v1/label/__name__/values", url.Values{"match[]": {`{job="api"}`}}, 200},
		{"metadata", "GET", "/api/v1/metadata", nil, 200},
		{"metadata_metric", "GET", "/api/v1/metadata", url.Values{"metric": {"queue_depth"}}, 200},
		{"exemplars", "GET", "/api/v1/query_exemplars", url.Values{"query": {`build_info`}, "start": {ts(-time.Hour)}, "end": {ts(time.Hour)}}, 200},
		{"format_query", "GET", "/api/v1/format_query", url.Values{"query": {`sum(rate(http_requests_total{job="api"}[5m]))by(code)`}}, 200},
		{"buildinfo", "GET", "/api/v1/status/buildinfo", nil, 200},

		{"error_bad_query", "GET", "/api/v1/query", url.Values{"query": {`sum(rate(x[5m]`}}, 400},
		{"error_empty_query", "GET", "/api/v1/query", url.Values{"query": {""}}, 400},
		{"error_bad_time", "GET", "/api/v1/query", url.Values{"query": {`up`}, "time": {"yesterday"}}, 400},
		{"error_bad_timeout", "GET", "/api/v1/query", url.Values{"query": {`up`}, "timeout": {"-1s"}}, 400},
		{"error_range_type", "GET", "/api/v1/query_range", url.Values{"query": {`queue_depth[5m]`}, "start": {ts(-time.Hour)}, "end": {ts(0)}, "step": {"60"}}, 400},
		{"error_step_zero", "GET", "/api/v1/query_range", url.Values{"query": {`up`}, "start": {ts(-time.Hour)}, "end": {ts(0)}, "step": {"0"}}, 400},
		{"error_end_before_start", "GET", "/api/v1/query_range", url.Values{"query": {`up`}, "start": {ts(0)}, "end": {ts(-time.Hour)}, "step": {"60"}}, 400},
		{"error_too_many_points", "GET", "/api/v1/query_range", url.Values{"query": {`up`}, "start": {ts(-48 * time.Hour)}, "end": {ts(0)}, "step": {"1"}}, 400},
		{"error_series_no_match", "GET", "/api/v1/series", nil, 400},
		{"error_series_empty_matcher", "GET", "/api/v1/series", url.Values{"match[]": {`{job=~".*"}`}}, 400},
		{"error_bad_label_name", "GET", "/api/v1/label/" + url.PathEscape("a\xffb") + "/values", nil, 400},
		{"error_execution", "GET", "/api/v1/query", url.Values{"query": {`http_requests_total + on(job) http_requests_total`}, "time": {ts(0)}}, 422},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var resp *http.Response
			var err error
			if tc.method == "POST" {
				resp, err = http.PostForm(srv.URL+tc.path, tc.params)
			} else {
				resp, err = http.Get(srv.URL + tc.path + "?" + tc.params.Encode())
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
			golden(t, filepath.Join("testdata", tc.name+".json"), body)
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if string(want) != string(got) {
		t.Fatalf("response differs from %s (run with -update if the change is intended)\n got: %s\nwant: %s", path, got, want)
	}
}

// TestQueryLimits checks that the configured limits are enforced with
// Prometheus's error types and status codes.
func TestQueryLimits(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxSamples = 10
	srv := newTestAPI(t, cfg)
	resp, err := http.Get(srv.URL + "/api/v1/query_range?" + url.Values{"query": {`http_requests_total`}, "start": {ts(-30 * time.Minute)}, "end": {ts(0)}, "step": {"60"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 422 || !strings.Contains(string(body), `"errorType":"execution"`) || !strings.Contains(string(body), "query processing would load too many samples into memory") {
		t.Fatalf("max_samples: %d %s", resp.StatusCode, body)
	}

	cfg = DefaultConfig()
	cfg.Timeout = model.Duration(time.Nanosecond)
	srv = newTestAPI(t, cfg)
	resp, err = http.Get(srv.URL + "/api/v1/query?" + url.Values{"query": {`count_over_time(http_requests_total[1h])`}, "time": {ts(0)}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), `"errorType":"timeout"`) {
		t.Fatalf("timeout: %d %s", resp.StatusCode, body)
	}
}

func TestParseTimeAndDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time
		err  bool
	}{
		{"1767225600", base, false},
		{"1767225600.5", base.Add(500 * time.Millisecond), false},
		{"2026-01-01T00:00:00Z", base, false},
		{"2026-01-01T01:00:00+01:00", base, false},
		{"soon", time.Time{}, true},
	} {
		got, err := ParseTime(tc.in)
		if (err != nil) != tc.err || (!tc.err && !got.Equal(tc.want)) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"15", 15 * time.Second, false},
		{"0.5", 500 * time.Millisecond, false},
		{"5m", 5 * time.Minute, false},
		{"1h30m", 90 * time.Minute, false},
		{"1e300", 0, true},
		{"fast", 0, true},
	} {
		got, err := ParseDuration(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}
