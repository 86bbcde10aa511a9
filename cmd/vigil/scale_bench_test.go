package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/vigilhq/vigil/bench/procstat"
	"github.com/vigilhq/vigil/internal/peers"
)

// BenchmarkScaledVsSingle measures what the scaled design costs: the same
// shop traffic (b.N rounds of 200 requests, 1,133 spans and 213 log records
// a round) goes through the load-balancing tier to three collector
// replicas forwarding to a store, and to one single Vigil. It reports, per
// 1,000 spans, the CPU seconds of the single Vigil, of each replica, of the
// store and of the OpenTelemetry Collector tier, and their resident memory
// at the end. Not part of `make test`:
//
//	go test ./cmd/vigil -run '^$' -bench ScaledVsSingle -benchtime 100x
func BenchmarkScaledVsSingle(b *testing.B) {
	store := peers.StartVigil(b, "", "--config", benchConfig(b, scaleFlush+`
ingest:
  accept_derived_series_from: [anonymous]
`))
	single := peers.StartVigil(b, "", "--config", benchConfig(b, scaleFlush))
	ccfg := benchConfig(b, collectorConfig(store.Addr, ""))
	var collectors []*peers.Vigil
	var addrs []string
	for i := range 3 {
		c := peers.StartVigil(b, "", "--config", ccfg, "--collector.replica", fmt.Sprintf("collector-%d", i))
		collectors = append(collectors, c)
		addrs = append(addrs, c.OTLPGRPC)
	}
	lb := peers.StartOtelcolLB(b, addrs)
	procs := map[string]*peers.Process{"single": single.Process, "store": store.Process, "otelcol": lb.Process}
	for i, c := range collectors {
		procs[fmt.Sprintf("collector-%d", i)] = c.Process
	}
	before := map[string]procstat.Sample{}
	read := func(into map[string]procstat.Sample) {
		for name, p := range procs {
			s, err := procstat.Read(p.Pid())
			if err != nil {
				b.Fatal(err)
			}
			into[name] = s
		}
	}
	sent := newShopSent()
	load := newShopLoad(b, sent, lb.OTLPGRPC, single.OTLPGRPC)
	load.round(20, []string{"v1", "v2"}, map[string]int{"v1": 50, "v2": 3}) // warm up
	// What each process spends idle (flushes, rule evaluation, GC) is
	// measured first and taken off, so that the figures are per span.
	time.Sleep(3 * time.Second)
	idle0 := map[string]procstat.Sample{}
	read(idle0)
	idleStart := time.Now()
	time.Sleep(5 * time.Second)
	read(before)
	idleFor := time.Since(idleStart)
	start := time.Now()
	b.ResetTimer()
	for range b.N {
		load.round(200, []string{"v1", "v2"}, map[string]int{"v1": 50, "v2": 3})
	}
	b.StopTimer()
	want := sent.want()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		g := readShopTotals(b, store.URL())
		if equalCounts(g.spans, want.spans) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the store never counted what was sent: %v, want %v", g.spans, want.spans)
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // the last flushes and forwarding
	after := map[string]procstat.Sample{}
	read(after)
	elapsed := time.Since(start)
	spans := 0.0
	for _, n := range want.spans {
		spans += n
	}
	kspans := spans / 1000
	replicas := 0.0
	for name := range procs {
		idle := (before[name].CPU - idle0[name].CPU).Seconds() / idleFor.Seconds() * elapsed.Seconds()
		cpu := ((after[name].CPU - before[name].CPU).Seconds() - idle) / kspans
		b.ReportMetric(cpu*1000, "ms-cpu/kspan-"+name)
		b.ReportMetric(float64(after[name].RSS)/(1<<20), "MiB-rss-"+name)
		if name != "single" && name != "store" && name != "otelcol" {
			replicas += cpu
		}
	}
	b.ReportMetric(replicas*1000/3, "ms-cpu/kspan-per-replica")
	b.Logf("%.0f spans; head series: single %v, store %v, collector-0 %v", spans,
		selfMetric(b, single.URL(), "prometheus_tsdb_head_series"), selfMetric(b, store.URL(), "prometheus_tsdb_head_series"), selfMetric(b, collectors[0].URL(), "prometheus_tsdb_head_series"))
}

// benchConfig writes a vigil.yml for a benchmark.
func benchConfig(b *testing.B, content string) string {
	b.Helper()
	return writeConfig(b, content)
}
