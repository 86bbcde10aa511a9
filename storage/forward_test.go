package storage_test

import (
	"context"
	"math"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/collector"
	"github.com/vigilhq/vigil/collector/hotpath"
	"github.com/vigilhq/vigil/collector/remotewrite"
	"github.com/vigilhq/vigil/storage"
)

// TestDrainSendsEverything: samples committed right before shutdown — a
// collector replica's last flush — reach the remote_write endpoint when the
// forwarder is drained before it is closed, and the marker says when.
func TestDrainSendsEverything(t *testing.T) {
	for round := range 3 {
		// The receiving end: Vigil's own remote_write receiver and hot path
		// in front of a second TSDB.
		rcfg := storage.DefaultConfig()
		rcfg.Path = t.TempDir()
		got, err := storage.Open(rcfg, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		pipe, err := hotpath.New(hotpath.Config{IngestLimits: collector.DefaultIngestLimits(), SeriesCacheSize: 32 << 20, AcceptDerivedSeriesFrom: []string{"anonymous"}}, got, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		rcv, err := remotewrite.New(remotewrite.DefaultConfig(), pipe, nil, collector.NewMetrics(prometheus.NewRegistry()), nil)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(rcv)
		cfg := storage.DefaultConfig()
		cfg.Path = t.TempDir()
		st, err := storage.Open(cfg, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		fwd := storage.NewForwarder(st, time.Minute, nil, prometheus.NewRegistry())
		u, _ := url.Parse(srv.URL + "/api/v1/write")
		rw := promconfig.DefaultRemoteWriteConfig
		rw.URL = &config_util.URL{URL: u}
		rw.Name = "test"
		rw.QueueConfig.BatchSendDeadline = model.Duration(5 * time.Millisecond)
		if err := fwd.ApplyConfig(storage.ForwardConfig{RemoteWrite: []*promconfig.RemoteWriteConfig{&rw}}); err != nil {
			t.Fatal(err)
		}
		// The watcher starts from the newest WAL position when the queue
		// starts: write after it has.
		time.Sleep(200 * time.Millisecond)
		now := time.Now()
		app := st.AppenderV2(context.Background())
		const n = 2000
		for i := range n {
			if _, err := app.Append(0, labels.FromStrings("__name__", "log_records_total", "i", string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676))), 0, now.UnixMilli(), float64(i), nil, nil, promstorage.AOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := fwd.Drain(ctx, st, labels.FromStrings("__name__", "vigil_shutdown_timestamp_seconds", "collector", "c1")); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := fwd.Close(); err != nil {
			t.Fatal(err)
		}
		_ = st.Close()
		srv.Close()
		if c := countSeries(t, got, "log_records_total"); c != n {
			t.Errorf("round %d: %d of %d series arrived", round, c, n)
		}
		if c := countSeries(t, got, "vigil_shutdown_timestamp_seconds"); c != 1 {
			t.Errorf("round %d: %d shutdown markers, want 1", round, c)
		}
		_ = got.Close()
	}
}

func countSeries(t *testing.T, st *storage.Storage, name string) int {
	t.Helper()
	q, err := st.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", name))
	n := 0
	for set.Next() {
		n++
	}
	return n
}
