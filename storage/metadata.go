package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/metadata"
)

// DefaultMaxMetadataFamilies bounds how many metric families keep metadata.
const DefaultMaxMetadataFamilies = 200000

// MetadataStore keeps the type, help and unit of each metric family as senders
// report them (remote_write 1.0 metadata, remote_write 2.0 per-series
// metadata, OTLP). It lives in memory, is bounded, and is saved beside the
// TSDB so that /api/v1/metadata still answers after a restart.
type MetadataStore struct {
	path string
	max  int

	mu       sync.RWMutex
	families map[string][]metadata.Metadata
	dirty    bool
	dropped  prometheus.Counter
	size     prometheus.GaugeFunc
}

// OpenMetadataStore loads the store saved at path, if any.
func OpenMetadataStore(path string, maxFamilies int) (*MetadataStore, error) {
	s := &MetadataStore{
		path:     path,
		max:      maxFamilies,
		families: map[string][]metadata.Metadata{},
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_metadata_dropped_total",
			Help: "Metric metadata updates dropped because the store holds storage's limit of metric families.",
		}),
	}
	s.size = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "vigil_metadata_families",
		Help: "Metric families with known metadata.",
	}, func() float64 {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return float64(len(s.families))
	})
	if path == "" {
		return s, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read metadata %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &s.families); err != nil {
		return nil, fmt.Errorf("parse metadata %s: %w", path, err)
	}
	return s, nil
}

// Collectors are the store's self-metrics.
func (s *MetadataStore) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.dropped, s.size}
}

// Set records m for family. Strings are cloned: callers may pass strings that
// alias a request buffer.
func (s *MetadataStore) Set(family string, m metadata.Metadata) {
	if family == "" || (m.Type == model.MetricTypeUnknown && m.Help == "" && m.Unit == "") {
		return
	}
	s.mu.RLock()
	cur, ok := s.families[family]
	same := ok && len(cur) == 1 && cur[0] == m
	s.mu.RUnlock()
	if same {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.families[family]; !ok && len(s.families) >= s.max {
		s.dropped.Inc()
		return
	}
	s.families[strings.Clone(family)] = []metadata.Metadata{{
		Type: model.MetricType(strings.Clone(string(m.Type))),
		Help: strings.Clone(m.Help),
		Unit: strings.Clone(m.Unit),
	}}
	s.dirty = true
}

// Get returns the metadata of one family, or of all families when family is
// empty, keeping at most limit families and limitPerMetric entries each
// (non-positive limits mean no limit).
func (s *MetadataStore) Get(family string, limit, limitPerMetric int) map[string][]metadata.Metadata {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[string][]metadata.Metadata{}
	add := func(name string, ms []metadata.Metadata) {
		if limitPerMetric > 0 && len(ms) > limitPerMetric {
			ms = ms[:limitPerMetric]
		}
		out[name] = slices.Clone(ms)
	}
	if family != "" {
		if ms, ok := s.families[family]; ok {
			add(family, ms)
		}
		return out
	}
	names := make([]string, 0, len(s.families))
	for name := range s.families {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if limit > 0 && len(out) >= limit {
			break
		}
		add(name, s.families[name])
	}
	return out
}

// Save writes the store to its file if it changed since the last save.
func (s *MetadataStore) Save() error {
	if s.path == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.dirty {
		return nil
	}
	b, err := json.Marshal(s.families)
	if err != nil {
		return fmt.Errorf("encode metadata: %w", err)
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write metadata %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("rename metadata %s: %w", filepath.Base(tmp), err)
	}
	s.dirty = false
	return nil
}
