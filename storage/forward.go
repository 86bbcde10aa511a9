package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
)

// ForwardConfig is what the forwarder sends where; a reload can change it.
type ForwardConfig struct {
	// RemoteWrite are Prometheus remote_write endpoints, in Prometheus's
	// own configuration format (url, headers, auth, tls_config,
	// write_relabel_configs, queue_config, protobuf_message, ...).
	RemoteWrite []*promconfig.RemoteWriteConfig
	// RemoteRead are Prometheus remote_read endpoints (Mimir, Thanos,
	// Prometheus) that queries also read: with read_recent false (the
	// default) only for ranges older than what Vigil holds itself, so
	// Grafana keeps one data source past local retention.
	RemoteRead []*promconfig.RemoteReadConfig
	// ExternalLabels are added to every series sent.
	ExternalLabels labels.Labels
}

// Forwarder sends every sample that lands in the TSDB on to remote_write
// endpoints with Prometheus's own remote-write queue manager: it tails the
// TSDB's WAL, so the WAL on disk is the persistent queue. When an endpoint
// is down, samples wait on disk, not in memory (each shard buffers at most
// queue_config.capacity samples), and are sent in order once it returns;
// 5xx and 429 (retry_on_http_429) are retried with backoff, other 4xx are
// dropped and counted (prometheus_remote_storage_samples_failed_total).
//
// The queue is bounded by the WAL: a segment is removed at head compaction
// (about every 2h), and samples an endpoint has not received by then are
// dropped, logged and counted, as in Prometheus. Progress is not kept across
// restarts: a restarted Vigil sends from the newest WAL position on.
type Forwarder struct {
	rs     *remote.Storage
	logger *slog.Logger
	queues atomic.Int64
	// stall is how long Drain waits for remote write to send anything at
	// all before it gives up on an endpoint that does not answer.
	stall atomic.Int64
}

// noScrapeManager tells remote write's metadata watcher that Vigil has no
// scrape targets; metadata is not forwarded.
type noScrapeManager struct{}

func (noScrapeManager) Get() (*scrape.Manager, error) {
	return nil, errors.New("vigil does not scrape")
}

// NewForwarder starts forwarding what s writes. flushDeadline bounds how
// long Close waits for queued samples to be sent.
func NewForwarder(s *Storage, flushDeadline time.Duration, logger *slog.Logger, reg prometheus.Registerer) *Forwarder {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	rs := remote.NewStorage(logger.With("component", "remote"), reg, s.StartTime, s.db.Dir(), flushDeadline, noScrapeManager{}, false)
	s.db.SetWriteNotified(rs)
	return &Forwarder{rs: rs, logger: logger}
}

// ApplyConfig starts, changes or stops the queues; a queue whose endpoint
// configuration did not change keeps running untouched.
func (f *Forwarder) ApplyConfig(cfg ForwardConfig) error {
	for i, rw := range cfg.RemoteWrite {
		if rw == nil || rw.URL == nil {
			return fmt.Errorf("remote_write[%d]: url is required", i)
		}
	}
	if err := f.rs.ApplyConfig(&promconfig.Config{
		GlobalConfig: promconfig.GlobalConfig{
			ExternalLabels:             cfg.ExternalLabels,
			MetricNameValidationScheme: model.UTF8Validation,
		},
		RemoteWriteConfigs: cfg.RemoteWrite,
		RemoteReadConfigs:  cfg.RemoteRead,
	}); err != nil {
		return fmt.Errorf("apply remote_write config: %w", err)
	}
	f.queues.Store(int64(len(cfg.RemoteWrite)))
	var deadline time.Duration
	for _, rw := range cfg.RemoteWrite {
		deadline = max(deadline, time.Duration(rw.QueueConfig.BatchSendDeadline))
	}
	f.stall.Store(int64(2*deadline + 5*time.Second))
	if len(cfg.RemoteWrite) > 0 {
		f.logger.Info("Forwarding by remote_write", "endpoints", len(cfg.RemoteWrite))
	}
	return nil
}

// Forwarding reports whether samples are sent anywhere.
func (f *Forwarder) Forwarding() bool { return f.queues.Load() > 0 }

// Drain makes sure remote_write has taken everything s holds before it is
// closed, when nothing writes any more (shutdown, after the receivers and
// the last flush of derived series): a collector replica scaled in hands
// over what it derived since its last flush. Remote write says how far it
// got only by the second of the newest sample it sent, so Drain writes
// one last sample, marker (Vigil's shutdown time), in a second after every
// other, and returns once a sample of that second was sent to every
// endpoint — the queues have then read the WAL to its end — or ctx is done.
func (f *Forwarder) Drain(ctx context.Context, s *Storage, marker labels.Labels) error {
	next := time.UnixMilli((s.HeadMaxTime()/1000 + 1) * 1000)
	if d := time.Until(next); d > time.Second {
		return fmt.Errorf("samples stamped up to %s, in the future: not waiting for them", next.Format(time.RFC3339))
	} else if d > 0 {
		time.Sleep(d)
	}
	now := time.Now()
	app := s.AppenderV2(ctx)
	if _, err := app.Append(0, marker, 0, now.UnixMilli(), float64(now.UnixMilli())/1000, nil, nil, promstorage.AOptions{}); err != nil {
		_ = app.Rollback()
		return fmt.Errorf("write %s: %w", marker, err)
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("write %s: %w", marker, err)
	}
	if !f.waitSent(ctx, now.UnixMilli()) {
		return fmt.Errorf("remote_write had not sent the last samples within storage.remote_flush_deadline: %w", ctx.Err())
	}
	return nil
}

// waitSent waits until every remote_write endpoint has been sent a sample
// of the second of t (Unix milliseconds) or later; it gives up when ctx is
// done or nothing was sent for two batch_send_deadlines and 5s (an
// endpoint that is down: Close still waits for it up to the flush
// deadline). It reports whether everything was sent.
func (f *Forwarder) waitSent(ctx context.Context, t int64) bool {
	want := t / 1000 * 1000
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	last, moved := f.rs.LowestSentTimestamp(), time.Now()
	for last < want {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
		if cur := f.rs.LowestSentTimestamp(); cur != last {
			last, moved = cur, time.Now()
		} else if time.Since(moved) > time.Duration(f.stall.Load()) {
			return false
		}
	}
	return true
}

// Queryable is local merged with the remote_read endpoints; an endpoint
// that fails turns into a warning on the query, not an error.
func (f *Forwarder) Queryable(local promstorage.Queryable) promstorage.Queryable {
	return promstorage.QueryableFunc(func(mint, maxt int64) (promstorage.Querier, error) {
		lq, err := local.Querier(mint, maxt)
		if err != nil {
			return nil, err
		}
		rq, err := f.rs.Querier(mint, maxt)
		if err != nil {
			f.logger.Warn("remote_read querier failed; answering from local storage only", "err", err)
			return lq, nil
		}
		return promstorage.NewMergeQuerier([]promstorage.Querier{lq}, []promstorage.Querier{rq}, promstorage.ChainedSeriesMerge), nil
	})
}

// Close sends what is queued, up to the flush deadline, and stops.
func (f *Forwarder) Close() error {
	if err := f.rs.Close(); err != nil {
		return fmt.Errorf("close remote write: %w", err)
	}
	return nil
}
