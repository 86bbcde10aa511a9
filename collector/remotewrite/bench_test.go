package remotewrite

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/collector"
	"github.com/vigilhq/vigil/collector/hotpath"
	"github.com/vigilhq/vigil/storage"
)

// benchSeries is the number of series per request, as Prometheus sends
// (queue_config.max_samples_per_send defaults to 2000).
const benchSeries = 2000

// benchLabels gives a series the shape of a real scraped one: 8 labels.
func benchLabels(i int) []prompb.Label {
	return []prompb.Label{
		{Name: "__name__", Value: fmt.Sprintf("node_metric_%d", i%50)},
		{Name: "cluster", Value: "prod-eu-1"},
		{Name: "cpu", Value: fmt.Sprint(i % 16)},
		{Name: "instance", Value: fmt.Sprintf("10.0.%d.%d:9100", i/250, i%250)},
		{Name: "job", Value: "node"},
		{Name: "mode", Value: "idle"},
		{Name: "namespace", Value: "monitoring"},
		{Name: "pod", Value: fmt.Sprintf("node-exporter-%05d", i/40)},
	}
}

func benchV1(ts int64) *prompb.WriteRequest {
	req := &prompb.WriteRequest{}
	for i := range benchSeries {
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: benchLabels(i), Samples: []prompb.Sample{{Value: float64(i), Timestamp: ts}}})
	}
	return req
}

func benchV2(ts int64) *writev2.Request {
	st := writev2.NewSymbolTable()
	req := &writev2.Request{}
	var b labels.ScratchBuilder
	for i := range benchSeries {
		b.Reset()
		for _, l := range benchLabels(i) {
			b.Add(l.Name, l.Value)
		}
		req.Timeseries = append(req.Timeseries, writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels(b.Labels(), nil), Samples: []writev2.Sample{{Value: float64(i), Timestamp: ts}}})
	}
	req.Symbols = st.Symbols()
	return req
}

func reportSamples(b *testing.B, perOp int) {
	b.ReportMetric(float64(perOp)*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
}

func BenchmarkDecodeV1(b *testing.B) {
	raw, _ := benchV1(1).Marshal()
	b.Run("vigil", func(b *testing.B) {
		var r Request
		b.SetBytes(int64(len(raw)))
		b.ReportAllocs()
		for b.Loop() {
			if err := DecodeV1(raw, &r); err != nil {
				b.Fatal(err)
			}
		}
		reportSamples(b, benchSeries)
	})
	b.Run("prompb", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		b.ReportAllocs()
		for b.Loop() {
			var r prompb.WriteRequest
			if err := r.Unmarshal(raw); err != nil {
				b.Fatal(err)
			}
		}
		reportSamples(b, benchSeries)
	})
}

func BenchmarkDecodeV2(b *testing.B) {
	raw, _ := benchV2(1).Marshal()
	b.Run("vigil", func(b *testing.B) {
		var r Request
		b.SetBytes(int64(len(raw)))
		b.ReportAllocs()
		for b.Loop() {
			if err := DecodeV2(raw, &r); err != nil {
				b.Fatal(err)
			}
		}
		reportSamples(b, benchSeries)
	})
	b.Run("prompb", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		b.ReportAllocs()
		for b.Loop() {
			var r writev2.Request
			if err := r.Unmarshal(raw); err != nil {
				b.Fatal(err)
			}
		}
		reportSamples(b, benchSeries)
	})
}

// BenchmarkSnappyDecode measures the decompression step alone.
func BenchmarkSnappyDecode(b *testing.B) {
	raw, _ := benchV1(1).Marshal()
	comp := snappy.Encode(nil, raw)
	buf := &collector.Buffer{}
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if err := collector.DecodeSnappy(buf, comp, 1<<30); err != nil {
			b.Fatal(err)
		}
	}
	reportSamples(b, benchSeries)
}

func openBenchStorage(b *testing.B) *storage.Storage {
	cfg := storage.DefaultConfig()
	cfg.Path = b.TempDir()
	st, err := storage.Open(cfg, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	return st
}

// BenchmarkWrite measures decode + append + WAL commit of a 2000-series
// request into a real TSDB whose series already exist (the steady state),
// straight to storage and through the hot path's series cache.
func BenchmarkWrite(b *testing.B) {
	b.Run("storage", func(b *testing.B) {
		st := openBenchStorage(b)
		benchWrite(b, uncached{st})
	})
	b.Run("hotpath", func(b *testing.B) {
		st := openBenchStorage(b)
		p, err := hotpath.New(hotpath.DefaultConfig(), st, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		benchWrite(b, p)
	})
}

// uncached is storage without the hot path: no series cache, no ingest limits.
type uncached struct{ *storage.Storage }

func (uncached) CachedRef([]byte) (promstorage.SeriesRef, bool)        { return 0, false }
func (uncached) CacheRef([]byte, labels.Labels, promstorage.SeriesRef) {}
func (uncached) ForgetRef([]byte)                                      {}

func benchWrite(b *testing.B, app Storage) {
	rcv, err := New(DefaultConfig(), app, nil, collector.NewMetrics(nil), nil)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now().Add(-time.Hour).UnixMilli()
	raw, _ := benchV1(start).Marshal()
	var r Request
	ts := start
	for b.Loop() {
		ts++
		if err := DecodeV1(raw, &r); err != nil {
			b.Fatal(err)
		}
		for i := range r.Series {
			r.Series[i].Samples[0].Timestamp = ts
		}
		if _, err := rcv.Write(context.Background(), &r); err != nil {
			b.Fatal(err)
		}
	}
	reportSamples(b, benchSeries)
}

// BenchmarkHTTP measures the whole endpoint: HTTP, snappy, decode, append, commit.
func BenchmarkHTTP(b *testing.B) {
	st := openBenchStorage(b)
	rcv, err := New(DefaultConfig(), uncached{st}, st.Metadata(), collector.NewMetrics(nil), nil)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	start := time.Now().Add(-time.Hour).UnixMilli()
	// Pre-encode requests with increasing timestamps outside the timer.
	const distinct = 64
	bodies := make([][]byte, distinct)
	for i := range bodies {
		raw, _ := benchV1(start + int64(i)).Marshal()
		bodies[i] = snappy.Encode(nil, raw)
	}
	client := srv.Client()
	n := 0
	for b.Loop() {
		if n == distinct {
			b.StopTimer()
			start += distinct
			for i := range bodies {
				raw, _ := benchV1(start + int64(i)).Marshal()
				bodies[i] = snappy.Encode(nil, raw)
			}
			n = 0
			b.StartTimer()
		}
		req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(bodies[n]))
		req.Header.Set("Content-Encoding", "snappy")
		req.Header.Set("Content-Type", "application/x-protobuf")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			b.Fatalf("status %d", resp.StatusCode)
		}
		n++
	}
	reportSamples(b, benchSeries)
}
