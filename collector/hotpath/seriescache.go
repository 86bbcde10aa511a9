package hotpath

import (
	"encoding/binary"
	"sync"

	"github.com/VictoriaMetrics/fastcache"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/storage"
)

// SeriesCache maps a series' label set, as it arrived on the wire, to its
// TSDB series reference. A receiver that finds a series here appends by
// reference: it neither builds nor validates nor hashes a label set, and the
// head skips its own lookup. Memory is bounded by fastcache, which drops
// the oldest entries when full; an entry whose series the head has since
// dropped is detected on append and replaced.
type SeriesCache struct {
	c        *fastcache.Cache
	requests *prometheus.CounterVec
	hits     prometheus.Counter
	misses   prometheus.Counter
	mu       sync.Mutex
	fs       fastcache.Stats
}

// NewSeriesCache creates a cache of at most maxBytes (fastcache rounds up to 32 MiB).
func NewSeriesCache(maxBytes int) *SeriesCache {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_series_cache_requests_total",
		Help: "Series reference cache lookups by result (hit or miss).",
	}, []string{"result"})
	return &SeriesCache{
		c:        fastcache.New(maxBytes),
		requests: requests,
		hits:     requests.WithLabelValues("hit"),
		misses:   requests.WithLabelValues("miss"),
	}
}

// Get returns the reference cached for key.
func (c *SeriesCache) Get(key []byte) (storage.SeriesRef, bool) {
	var buf [8]byte
	v, ok := c.c.HasGet(buf[:0], key)
	if !ok || len(v) != 8 {
		c.misses.Inc()
		return 0, false
	}
	c.hits.Inc()
	return storage.SeriesRef(binary.LittleEndian.Uint64(v)), true
}

// Set caches ref for key.
func (c *SeriesCache) Set(key []byte, ref storage.SeriesRef) {
	var buf [8]byte
	binary.LittleEndian.PutUint64(buf[:], uint64(ref))
	c.c.Set(key, buf[:])
}

// Delete forgets key (its series is gone from the head).
func (c *SeriesCache) Delete(key []byte) { c.c.Del(key) }

// Reset empties the cache, e.g. when the routing of series changes.
func (c *SeriesCache) Reset() { c.c.Reset() }

var (
	cacheEntriesDesc = prometheus.NewDesc("vigil_series_cache_entries", "Series held by the series reference cache.", nil, nil)
	cacheBytesDesc   = prometheus.NewDesc("vigil_series_cache_bytes", "Bytes used by the series reference cache.", nil, nil)
	cacheMaxDesc     = prometheus.NewDesc("vigil_series_cache_max_bytes", "Configured size of the series reference cache.", nil, nil)
	cacheRatioDesc   = prometheus.NewDesc("vigil_series_cache_hit_ratio", "Share of series cache lookups that hit, since start.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *SeriesCache) Describe(ch chan<- *prometheus.Desc) {
	c.requests.Describe(ch)
	ch <- cacheEntriesDesc
	ch <- cacheBytesDesc
	ch <- cacheMaxDesc
	ch <- cacheRatioDesc
}

// Collect implements prometheus.Collector.
func (c *SeriesCache) Collect(ch chan<- prometheus.Metric) {
	c.requests.Collect(ch)
	c.mu.Lock()
	c.fs.Reset()
	c.c.UpdateStats(&c.fs)
	fs := c.fs
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(cacheEntriesDesc, prometheus.GaugeValue, float64(fs.EntriesCount))
	ch <- prometheus.MustNewConstMetric(cacheBytesDesc, prometheus.GaugeValue, float64(fs.BytesSize))
	ch <- prometheus.MustNewConstMetric(cacheMaxDesc, prometheus.GaugeValue, float64(fs.MaxBytesSize))
	ratio := 0.0
	if fs.GetCalls > 0 {
		ratio = 1 - float64(fs.Misses)/float64(fs.GetCalls)
	}
	ch <- prometheus.MustNewConstMetric(cacheRatioDesc, prometheus.GaugeValue, ratio)
}
