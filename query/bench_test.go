package query

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/storage"
)

// BenchmarkQueryAPI measures query endpoints end to end (HTTP, engine,
// TSDB, JSON) over 1000 series with 2 hours of 15 s samples.
func BenchmarkQueryAPI(b *testing.B) {
	scfg := storage.DefaultConfig()
	scfg.Path = b.TempDir()
	st, err := storage.Open(scfg, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	end := time.Now().Truncate(time.Minute)
	start := end.Add(-2 * time.Hour)
	refs := make([]promstorage.SeriesRef, 1000)
	for t := start; !t.After(end); t = t.Add(15 * time.Second) {
		app := st.AppenderV2(context.Background())
		for i := range refs {
			ls := labels.FromStrings("__name__", "http_requests_total", "job", fmt.Sprintf("svc-%d", i%20), "instance", fmt.Sprintf("pod-%d", i), "code", []string{"200", "500"}[i%2])
			refs[i], err = app.Append(refs[i], ls, 0, t.UnixMilli(), float64(t.Sub(start).Seconds())*float64(i%7+1), nil, nil, promstorage.AOptions{})
			if err != nil {
				b.Fatal(err)
			}
		}
		if err := app.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	engine, err := NewEngine(DefaultConfig(), "", nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	api, err := NewAPI(APIConfig{Engine: engine, Storage: st})
	if err != nil {
		b.Fatal(err)
	}
	mux := auth.NewMux(nil, nil)
	api.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, bc := range []struct {
		name, path string
		params     url.Values
	}{
		{"instant_selective", "/api/v1/query", url.Values{"query": {`http_requests_total{instance="pod-7"}`}, "time": {fmt.Sprint(end.Unix())}}},
		{"instant_aggregate", "/api/v1/query", url.Values{"query": {`sum by (job) (rate(http_requests_total[5m]))`}, "time": {fmt.Sprint(end.Unix())}}},
		{"range_selective", "/api/v1/query_range", url.Values{"query": {`rate(http_requests_total{instance="pod-7"}[5m])`}, "start": {fmt.Sprint(start.Unix())}, "end": {fmt.Sprint(end.Unix())}, "step": {"60"}}},
		{"range_aggregate", "/api/v1/query_range", url.Values{"query": {`sum by (code) (rate(http_requests_total[5m]))`}, "start": {fmt.Sprint(start.Unix())}, "end": {fmt.Sprint(end.Unix())}, "step": {"60"}}},
		{"series", "/api/v1/series", url.Values{"match[]": {`http_requests_total{job="svc-3"}`}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			u := srv.URL + bc.path + "?" + bc.params.Encode()
			for b.Loop() {
				resp, err := http.Get(u)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
