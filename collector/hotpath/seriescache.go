package hotpath

import (
	"encoding/binary"
	"hash/maphash"
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
//
// Entries are keyed by a 128-bit digest of the wire label set — two
// maphash hashes with independent random seeds — not by the label set
// itself: an entry takes 28 bytes instead of ~200 for 8 labels, so the
// default 64 MiB holds two million series instead of about 300,000 (with
// the whole label set as key, a million series thrashed the cache and every
// sample paid a miss, a label build and an insert). Two distinct label sets
// share a digest with probability n²/2¹²⁹, about 10⁻²⁶ for five million
// series; the seeds change at every start.
type SeriesCache struct {
	c        *fastcache.Cache
	seeds    [2]maphash.Seed
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
		seeds:    [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		requests: requests,
		hits:     requests.WithLabelValues("hit"),
		misses:   requests.WithLabelValues("miss"),
	}
}

// digest is the fastcache key for a wire label set.
func (c *SeriesCache) digest(key []byte) [16]byte {
	var d [16]byte
	binary.LittleEndian.PutUint64(d[:8], maphash.Bytes(c.seeds[0], key))
	binary.LittleEndian.PutUint64(d[8:], maphash.Bytes(c.seeds[1], key))
	return d
}

// Get returns the reference cached for key.
func (c *SeriesCache) Get(key []byte) (storage.SeriesRef, bool) {
	var buf [8]byte
	d := c.digest(key)
	v, ok := c.c.HasGet(buf[:0], d[:])
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
	d := c.digest(key)
	c.c.Set(d[:], buf[:])
}

// Delete forgets key (its series is gone from the head).
func (c *SeriesCache) Delete(key []byte) {
	d := c.digest(key)
	c.c.Del(d[:])
}

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
