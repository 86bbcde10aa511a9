package hotpath

import (
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/VictoriaMetrics/fastcache"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/storage"
)

func TestSeriesCache(t *testing.T) {
	c := NewSeriesCache(32 << 20)
	if _, ok := c.Get([]byte("a")); ok {
		t.Fatal("hit on an empty cache")
	}
	c.Set([]byte("a"), 42)
	if ref, ok := c.Get([]byte("a")); !ok || ref != 42 {
		t.Fatalf("Get = %d, %v", ref, ok)
	}
	c.Delete([]byte("a"))
	if _, ok := c.Get([]byte("a")); ok {
		t.Fatal("hit after Delete")
	}
	if hits, misses := testutil.ToFloat64(c.hits), testutil.ToFloat64(c.misses); hits != 1 || misses != 2 {
		t.Errorf("hits %v misses %v, want 1 and 2", hits, misses)
	}
	if got := testutil.CollectAndCount(c, "vigil_series_cache_hit_ratio"); got != 1 {
		t.Errorf("hit ratio metric missing")
	}
}

// TestSeriesCacheBounded: far more keys than fit stay within the
// configured bytes; old entries are dropped, recent ones stay.
func TestSeriesCacheBounded(t *testing.T) {
	c := NewSeriesCache(32 << 20)
	key := make([]byte, 0, 128)
	for i := range 2_000_000 {
		key = append(key[:0], `{__name__="http_requests_total", instance="10.0.0.1:8080", path="/users/`...)
		key = strconv.AppendInt(key, int64(i), 10)
		c.Set(key, storage.SeriesRef(i))
	}
	var s fastcacheStats
	c.c.UpdateStats(&s.Stats)
	if s.BytesSize > 40<<20 {
		t.Errorf("cache uses %d MiB for 32 MiB configured", s.BytesSize>>20)
	}
	if ref, ok := c.Get(key); !ok || ref != 1_999_999 {
		t.Errorf("the newest key is missing")
	}
}

// The benchmarks compare the fastcache-backed cache with a plain Go map
// guarded by a mutex, the obvious alternative, on a working set of a
// million series keys.
const benchKeys = 1 << 20

func benchKeysOf() [][]byte {
	keys := make([][]byte, benchKeys)
	for i := range keys {
		keys[i] = strconv.AppendInt([]byte(`{__name__="http_requests_total", instance="10.0.0.1:8080", path="/users/`), int64(i), 10)
	}
	return keys
}

type mapCache struct {
	mu sync.RWMutex
	m  map[string]storage.SeriesRef
}

func (c *mapCache) Get(k []byte) (storage.SeriesRef, bool) {
	c.mu.RLock()
	r, ok := c.m[string(k)]
	c.mu.RUnlock()
	return r, ok
}

func (c *mapCache) Set(k []byte, r storage.SeriesRef) {
	c.mu.Lock()
	c.m[string(k)] = r
	c.mu.Unlock()
}

func BenchmarkSeriesCacheGet(b *testing.B) {
	keys := benchKeysOf()
	fc := NewSeriesCache(256 << 20)
	mc := &mapCache{m: map[string]storage.SeriesRef{}}
	for i, k := range keys {
		fc.Set(k, storage.SeriesRef(i))
		mc.Set(k, storage.SeriesRef(i))
	}
	for _, c := range []struct {
		name string
		get  func([]byte) (storage.SeriesRef, bool)
	}{{"fastcache", fc.Get}, {"map", mc.Get}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					c.get(keys[i&(benchKeys-1)])
					i += 7919
				}
			})
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/sample")
		})
	}
}

// BenchmarkSeriesCacheMemory reports the memory each cache holds per
// series for a million series: Go heap for the map, Go heap plus the
// off-heap buckets fastcache allocates itself (not scanned by the GC).
func BenchmarkSeriesCacheMemory(b *testing.B) {
	keys := benchKeysOf()
	for _, name := range []string{"fastcache", "map"} {
		b.Run(name, func(b *testing.B) {
			for range b.N {
				before := heapAlloc()
				var offHeap uint64
				var keep any
				if name == "fastcache" {
					fc := NewSeriesCache(256 << 20)
					for i, k := range keys {
						fc.Set(k, storage.SeriesRef(i))
					}
					var st fastcache.Stats
					fc.c.UpdateStats(&st)
					offHeap, keep = st.BytesSize, fc
				} else {
					mc := &mapCache{m: map[string]storage.SeriesRef{}}
					for i, k := range keys {
						mc.Set(k, storage.SeriesRef(i))
					}
					keep = mc
				}
				heap := int64(heapAlloc()) - int64(before)
				runtime.KeepAlive(keep)
				b.ReportMetric(float64(heap)/benchKeys, "heap-bytes/series")
				b.ReportMetric(float64(offHeap)/benchKeys, "offheap-bytes/series")
			}
		})
	}
}

type fastcacheStats struct{ fastcache.Stats }

func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestSeriesCacheHoldsMillionSeries: with the default size, the cache
// keeps a million series whose wire label sets are of a realistic size
// (8 labels, ~170 bytes), so that a steady remote_write stream hits it.
func TestSeriesCacheHoldsMillionSeries(t *testing.T) {
	if testing.Short() {
		t.Skip("a million keys")
	}
	c := NewSeriesCache(int(DefaultConfig().SeriesCacheSize))
	key := func(i int) []byte {
		k := []byte("__name__\xffnode_cpu_seconds_total\xfecluster\xffprod-eu-1\xfecontainer\xffnode-exporter\xfe" +
			"instance\xff10.0.0.1:9100\xfejob\xffnode-exporter\xfemode\xffidle\xfenamespace\xffmonitoring\xfepod\xffnode-exporter-")
		return strconv.AppendInt(k, int64(i), 10)
	}
	const n = 1_000_000
	for i := range n {
		c.Set(key(i), storage.SeriesRef(i+1))
	}
	hits := 0
	for i := range n {
		if ref, ok := c.Get(key(i)); ok {
			if ref != storage.SeriesRef(i+1) {
				t.Fatalf("key %d: ref %d, want %d", i, ref, i+1)
			}
			hits++
		}
	}
	if hits < n*99/100 {
		t.Fatalf("%d of %d series still cached, want at least 99%%", hits, n)
	}
}
