// Package query answers PromQL over Vigil's storage with the embedded
// Prometheus engine and serves the Prometheus HTTP API (/api/v1/*) that
// Grafana, promtool and `vigil query` use.
package query

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
)

// Config sets the limits every query runs under.
type Config struct {
	// Timeout is the longest a query may run (a request's own timeout may only shorten it).
	Timeout model.Duration `yaml:"timeout"`
	// MaxSamples is the most samples a query may hold in memory at once.
	MaxSamples int `yaml:"max_samples"`
	// LookbackDelta is how far back an instant selector looks for a sample.
	LookbackDelta model.Duration `yaml:"lookback_delta"`
	// MaxConcurrency is how many queries run at once; the rest wait.
	MaxConcurrency int `yaml:"max_concurrency"`
	// DefaultSubqueryStep is the step of a subquery written without one
	// (Prometheus uses its global evaluation_interval).
	DefaultSubqueryStep model.Duration `yaml:"default_subquery_step"`
}

// DefaultConfig mirrors Prometheus's defaults.
func DefaultConfig() Config {
	return Config{
		Timeout:             model.Duration(2 * time.Minute),
		MaxSamples:          50000000,
		LookbackDelta:       model.Duration(5 * time.Minute),
		MaxConcurrency:      20,
		DefaultSubqueryStep: model.Duration(time.Minute),
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Timeout <= 0:
		return fmt.Errorf("timeout must be positive, got %s", c.Timeout)
	case c.MaxSamples <= 0:
		return fmt.Errorf("max_samples must be positive, got %d", c.MaxSamples)
	case c.LookbackDelta <= 0:
		return fmt.Errorf("lookback_delta must be positive, got %s", c.LookbackDelta)
	case c.MaxConcurrency <= 0:
		return fmt.Errorf("max_concurrency must be positive, got %d", c.MaxConcurrency)
	case c.DefaultSubqueryStep <= 0:
		return fmt.Errorf("default_subquery_step must be positive, got %s", c.DefaultSubqueryStep)
	}
	return nil
}

// Engine is the PromQL engine with the parser it was built with.
type Engine struct {
	*promql.Engine
	Parser parser.Parser
	cfg    Config
}

// NewEngine builds the PromQL engine. When dataDir is set, the queries in
// flight are tracked in a file there (as Prometheus does) so that a query
// that crashes the process is logged at the next start, and concurrency is
// bounded by cfg.MaxConcurrency.
func NewEngine(cfg Config, dataDir string, logger *slog.Logger, reg prometheus.Registerer) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("query.%w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := parser.NewParser(parser.Options{})
	opts := promql.EngineOpts{
		Logger:               logger.With("component", "query engine"),
		Reg:                  reg,
		MaxSamples:           cfg.MaxSamples,
		Timeout:              time.Duration(cfg.Timeout),
		LookbackDelta:        time.Duration(cfg.LookbackDelta),
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		Parser:               p,
		NoStepSubqueryIntervalFn: func(int64) int64 {
			return int64(time.Duration(cfg.DefaultSubqueryStep) / time.Millisecond)
		},
	}
	e := &Engine{Parser: p, cfg: cfg}
	if dataDir != "" {
		dir := filepath.Join(dataDir, "queries")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create query log dir %s: %w", dir, err)
		}
		tracker, err := promql.NewActiveQueryTracker(dir, cfg.MaxConcurrency, logger.With("component", "active queries"))
		if err != nil {
			return nil, fmt.Errorf("open active query tracker in %s: %w", dir, err)
		}
		opts.ActiveQueryTracker = tracker
	}
	e.Engine = promql.NewEngine(opts)
	return e, nil
}

// Config returns the limits the engine runs under.
func (e *Engine) Config() Config { return e.cfg }
