// Package storage embeds the Prometheus TSDB that holds everything Vigil
// ingests: a write-ahead log that makes an acknowledged sample durable, a head
// block for recent data, persistent blocks, and retention by age and size.
package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/alecthomas/units"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/compression"
)

// Config configures the embedded TSDB. Start from DefaultConfig: Open
// validates the config as given and fills in nothing.
type Config struct {
	// Path is the data directory; the TSDB and Vigil's own state live below it.
	Path string `yaml:"path"`
	// Retention is how long samples are kept.
	Retention model.Duration `yaml:"retention"`
	// RetentionSize is the most bytes blocks may take before the oldest go (0: no limit).
	RetentionSize units.Base2Bytes `yaml:"retention_size"`
	// OutOfOrderTimeWindow accepts samples up to this far behind a series' newest sample.
	OutOfOrderTimeWindow model.Duration `yaml:"out_of_order_time_window"`
	// WALCompression compresses WAL records with snappy.
	WALCompression bool `yaml:"wal_compression"`
	// MaxExemplars is the size of the in-memory exemplar ring (0 turns exemplars off).
	MaxExemplars int64 `yaml:"max_exemplars"`
	// RemoteFlushDeadline bounds how long shutdown waits for remote_write
	// queues to send what they hold.
	RemoteFlushDeadline model.Duration `yaml:"remote_flush_deadline"`
}

// DefaultConfig returns the configuration `vigil serve` runs with when nothing is set.
func DefaultConfig() Config {
	return Config{
		Path:           "data",
		Retention:      model.Duration(15 * 24 * time.Hour),
		WALCompression: true,
		MaxExemplars:   100000,

		RemoteFlushDeadline: model.Duration(time.Minute),
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Path == "":
		return errors.New("path must not be empty")
	case c.Retention < 0:
		return fmt.Errorf("retention must not be negative, got %s", c.Retention)
	case c.RetentionSize < 0:
		return fmt.Errorf("retention_size must not be negative, got %s", c.RetentionSize)
	case c.OutOfOrderTimeWindow < 0:
		return fmt.Errorf("out_of_order_time_window must not be negative, got %s", c.OutOfOrderTimeWindow)
	case c.MaxExemplars < 0:
		return fmt.Errorf("max_exemplars must not be negative, got %d", c.MaxExemplars)
	case c.RemoteFlushDeadline <= 0:
		return fmt.Errorf("remote_flush_deadline must be positive, got %s", c.RemoteFlushDeadline)
	}
	return nil
}

// Storage is the opened TSDB plus the series metadata store.
type Storage struct {
	cfg      Config
	logger   *slog.Logger
	db       *tsdb.DB
	metadata *MetadataStore

	stop, done chan struct{}
}

// Open opens (or creates) the TSDB under cfg.Path, replaying its WAL. It
// returns once every sample acknowledged before the last shutdown or crash is
// queryable again.
func Open(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Storage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("storage.%w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	tsdbDir := filepath.Join(cfg.Path, "tsdb")
	if err := os.MkdirAll(tsdbDir, 0o755); err != nil {
		return nil, fmt.Errorf("create tsdb dir %s: %w", tsdbDir, err)
	}

	opts := tsdb.DefaultOptions()
	opts.RetentionDuration = int64(time.Duration(cfg.Retention) / time.Millisecond)
	opts.MaxBytes = int64(cfg.RetentionSize)
	opts.OutOfOrderTimeWindow = int64(time.Duration(cfg.OutOfOrderTimeWindow) / time.Millisecond)
	if cfg.WALCompression {
		opts.WALCompression = compression.Snappy
	}
	opts.EnableExemplarStorage = cfg.MaxExemplars > 0
	opts.MaxExemplars = cfg.MaxExemplars

	start := time.Now()
	db, err := tsdb.Open(tsdbDir, logger.With("component", "tsdb"), reg, opts, nil)
	if err != nil {
		return nil, fmt.Errorf("open tsdb %s: %w", tsdbDir, err)
	}
	md, err := OpenMetadataStore(filepath.Join(cfg.Path, "metadata.json"), DefaultMaxMetadataFamilies)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	if reg != nil {
		reg.MustRegister(md.Collectors()...)
	}
	logger.Info("TSDB opened", "path", tsdbDir, "retention", cfg.Retention, "head_series", db.Head().NumSeries(), "took", time.Since(start).Round(time.Millisecond))
	s := &Storage{cfg: cfg, logger: logger, db: db, metadata: md, stop: make(chan struct{}), done: make(chan struct{})}
	go s.saveMetadataLoop()
	return s, nil
}

// saveMetadataLoop saves the metadata store every minute, so that a crash
// loses at most a minute of metadata updates (samples are in the WAL).
func (s *Storage) saveMetadataLoop() {
	defer close(s.done)
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.metadata.Save(); err != nil {
				s.logger.Error("Saving metric metadata failed", "err", err)
			}
		}
	}
}

// AppenderV2 starts a transaction. Samples appended to it are durable once Commit returns.
func (s *Storage) AppenderV2(ctx context.Context) promstorage.AppenderV2 {
	return s.db.AppenderV2(ctx)
}

// Querier implements storage.Queryable for the PromQL engine and the API.
func (s *Storage) Querier(mint, maxt int64) (promstorage.Querier, error) {
	return s.db.Querier(mint, maxt)
}

// ChunkQuerier implements storage.ChunkQueryable.
func (s *Storage) ChunkQuerier(mint, maxt int64) (promstorage.ChunkQuerier, error) {
	return s.db.ChunkQuerier(mint, maxt)
}

// ExemplarQuerier implements storage.ExemplarQueryable.
func (s *Storage) ExemplarQuerier(ctx context.Context) (promstorage.ExemplarQuerier, error) {
	return s.db.ExemplarQuerier(ctx)
}

// NumSeries is the number of series in the in-memory head.
func (s *Storage) NumSeries() uint64 { return s.db.Head().NumSeries() }

// HeadMaxTime is the newest sample timestamp appended, in milliseconds
// (math.MinInt64 before the first).
func (s *Storage) HeadMaxTime() int64 { return s.db.Head().MaxTime() }

// Metadata is the store of metric metadata (type, help, unit) learned at ingest.
func (s *Storage) Metadata() *MetadataStore { return s.metadata }

// HeadStats reports the cardinality of the in-memory head, for /api/v1/status/tsdb.
func (s *Storage) HeadStats(statsByLabelName string, limit int) *tsdb.Stats {
	return s.db.Head().Stats(statsByLabelName, limit)
}

// StartTime is the timestamp of the oldest sample held, in milliseconds.
func (s *Storage) StartTime() (int64, error) {
	return s.db.StartTime()
}

// Close flushes the metadata store and closes the TSDB, which syncs the WAL.
func (s *Storage) Close() error {
	close(s.stop)
	<-s.done
	mdErr := s.metadata.Save()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close tsdb %s: %w", s.db.Dir(), err)
	}
	if mdErr != nil {
		return mdErr
	}
	return nil
}
