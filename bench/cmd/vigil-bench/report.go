package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/vigilhq/vigil/bench/loadgen"
)

type report struct {
	opts          options
	began         time.Time
	took          time.Duration
	machine       machine
	targets       []target
	payload       *loadgen.Payload
	decodeOnly    float64 // samples/s, one worker per core
	decode1       float64 // samples/s, one worker
	loadBefore    string
	loadAfter     string
	results       map[string][]ingestRep
	profileSource string
	cpuProfile    string
	heapProfile   string

	traces         map[string][]tracesRep // receiver/load
	traceLoads     []string
	traceReplay    *loadgen.TracesPayload
	tracesCfg      tracesConfig
	tracesNote     string
	otelcolVersion string
}

type machine struct {
	cores   int
	cpu     string
	memory  string
	kernel  string
	goVer   string
	fsKind  string
	dataDir string
}

func describeMachine(dataDir string) machine {
	m := machine{cores: runtime.NumCPU(), goVer: runtime.Version(), dataDir: dataDir}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				var kb int64
				_, _ = fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
				m.memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	m.fsKind = fsKind(dataDir)
	return m
}

// fsKind names the file system of dir: disk-backed or tmpfs.
func fsKind(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown"
	}
	switch uint32(st.Type) {
	case 0xEF53:
		return "ext4 on disk"
	case 0x58465342:
		return "xfs on disk"
	case 0x9123683E:
		return "btrfs on disk"
	case 0x01021994:
		return "tmpfs (memory)"
	case 0x794C7630:
		return "overlayfs"
	}
	return fmt.Sprintf("file system 0x%x", st.Type)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// figure is one row of the comparison: a value per target.
type figure struct {
	name   string
	unit   string
	value  func(ingestRep) float64
	format string
}

func (rp *report) med(target string, f func(ingestRep) float64) float64 {
	var xs []float64
	for _, r := range rp.results[target] {
		xs = append(xs, f(r))
	}
	return median(xs)
}

func (rp *report) figures() []figure {
	p := rp.payload
	fs := []figure{
		{"ingest, all rounds", "samples/s", func(r ingestRep) float64 { return r.samplesPerSec() }, "%.0f"},
		{"ingest, first round (creates the series)", "samples/s", func(r ingestRep) float64 { return float64(p.Config.Series) / r.FirstRound.Seconds() }, "%.0f"},
	}
	if p.Config.Rounds > 1 {
		fs = append(fs, figure{"ingest, later rounds (existing series)", "samples/s", func(r ingestRep) float64 { return r.laterSamplesPerSec(p) }, "%.0f"})
	}
	fs = append(fs,
		figure{"CPU per million samples", "s", func(r ingestRep) float64 { return r.cpuPerMillion() }, "%.2f"},
		figure{"peak RSS (VmHWM) after ingest", "MiB", func(r ingestRep) float64 { return float64(r.HWM) / (1 << 20) }, "%.0f"},
		figure{"memory per active series (RSS after − RSS idle)", "bytes", func(r ingestRep) float64 { return r.bytesPerSeries() }, "%.0f"},
	)
	for _, q := range querySet(p) {
		fs = append(fs, figure{"query: " + q.name, "ms", func(r ingestRep) float64 {
			return float64(r.QueryLatencies[q.name]) / float64(time.Millisecond)
		}, "%.2f"})
	}
	return fs
}

func (rp *report) markdown() string {
	var b strings.Builder
	o, p, m := rp.opts, rp.payload, rp.machine
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Vigil side by side with Prometheus and VictoriaMetrics\n\n")
	w("Run %s, took %s; `make bench-peers` (`go run ./bench/cmd/vigil-bench %s`). Figures are medians of %d repetitions; each repetition starts every target afresh, one at a time, on loopback.\n\n",
		rp.began.UTC().Format("2006-01-02 15:04 MST"), rp.took.Round(time.Second), strings.Join(os.Args[1:], " "), o.reps)
	w("**Machine:** %d cores (%s), %s memory, Linux %s, %s. Load average (1/5/15 min) before the runs %s, after %s — the machine is shared, other work competes for the same cores.\n\n",
		m.cores, m.cpu, m.memory, m.kernel, m.goVer, rp.loadBefore, rp.loadAfter)
	w("**Data directories:** %s (`%s`), the same for every target.\n\n", m.fsKind, m.dataDir)
	w("**Load:** %s series × %d labels over %d metric names, %d samples each (%s apart), %d samples per remote_write 1.0 request, churn %g; %s samples, %s active series, %d requests, %.1f MiB snappy (%.1f MiB protobuf); %d concurrent senders, rounds sent one after the other. Every target is checked afterwards: its series count (`/api/v1/status/tsdb`) and, by PromQL, the samples, series and sum of values of `bench_metric_0` (a tenth of the data) must equal what was sent.\n\n",
		thousands(p.Config.Series), p.Config.Labels, p.Config.Metrics, p.Config.Rounds, p.Config.Interval, p.Config.SeriesPerRequest, p.Config.Churn,
		thousands(p.Samples), thousands(p.ActiveSeries), p.Requests(), float64(p.CompressedBytes)/(1<<20), float64(p.RawBytes)/(1<<20), o.senders)

	// Main table.
	w("| figure |")
	for _, t := range rp.targets {
		w(" %s |", t.name)
	}
	var peers []target
	for _, t := range rp.targets {
		if t.name != "Vigil" {
			peers = append(peers, t)
		}
	}
	_, hasVigil := rp.results["Vigil"]
	if hasVigil {
		for _, t := range peers {
			w(" Vigil/%s |", t.name)
		}
	}
	w("\n|---|")
	for range rp.targets {
		w("--:|")
	}
	if hasVigil {
		for range peers {
			w("--:|")
		}
	}
	w("\n| version |")
	for _, t := range rp.targets {
		w(" %s |", t.version)
	}
	if hasVigil {
		for range peers {
			w(" |")
		}
	}
	w("\n")
	for _, f := range rp.figures() {
		w("| %s, %s |", f.name, f.unit)
		for _, t := range rp.targets {
			w(" "+f.format+" |", rp.med(t.name, f.value))
		}
		if hasVigil {
			v := rp.med("Vigil", f.value)
			for _, t := range peers {
				w(" %.2f |", v/rp.med(t.name, f.value))
			}
		}
		w("\n")
	}
	w("| all samples verified by query |")
	for _, t := range rp.targets {
		ok := 0
		for _, r := range rp.results[t.name] {
			if r.VerifyErr == nil && r.Failed == 0 {
				ok++
			}
		}
		w(" %d of %d runs |", ok, len(rp.results[t.name]))
	}
	if hasVigil {
		for range peers {
			w(" |")
		}
	}
	w("\n\n")
	w("Ratios are Vigil's figure divided by the peer's: above 1 is better for ingest, below 1 is better for CPU, memory and latency.\n\n")

	ingest := func(r ingestRep) float64 { return r.samplesPerSec() }
	if hasVigil {
		vi := rp.med("Vigil", ingest)
		ceiling := max(rp.decodeOnly, rp.decode1)
		vcpu := rp.med("Vigil", func(r ingestRep) float64 { return r.cpuPerMillion() })
		w("**Decode-only ceiling** (snappy + Vigil's remote_write 1.0 decoder, nothing stored, in the harness process on the same payload): %.0f samples/s with %d workers, %.0f samples/s with one; the higher, %.0f samples/s, is the ceiling. Vigil's ingest over HTTP is **%.0f%%** of it. In CPU terms decoding costs %.2f s per million samples on one core, Vigil's whole ingest %.2f s: decoding is %.0f%% of Vigil's ingest work, storing (series lookup and creation, head append, WAL) the rest.\n\n",
			rp.decodeOnly, m.cores, rp.decode1, ceiling, 100*vi/ceiling, 1e6/rp.decode1, vcpu, 100*(1e6/rp.decode1)/vcpu)

		w("### Targets\n\n| target | measured | met |\n|---|--:|:-:|\n")
		check := func(name string, got float64, format string, ok bool) {
			mark := "no"
			if ok {
				mark = "yes"
			}
			w("| %s | "+format+" | %s |\n", name, got, mark)
		}
		for _, t := range peers {
			r := vi / rp.med(t.name, ingest)
			switch t.name {
			case "Prometheus":
				check("ingest ≥ 3× Prometheus", r, "%.2f×", r >= 3)
				mem := func(r ingestRep) float64 { return r.bytesPerSeries() }
				mr := rp.med("Vigil", mem) / rp.med(t.name, mem)
				check("memory per series ≤ 0.5× Prometheus", mr, "%.2f×", mr <= 0.5)
				for _, q := range querySet(p) {
					lat := func(r ingestRep) float64 { return float64(r.QueryLatencies[q.name]) }
					lr := rp.med("Vigil", lat) / rp.med(t.name, lat)
					check("query latency ≤ 1.1× Prometheus: "+q.name, lr, "%.2f×", lr <= 1.1)
				}
			case "VictoriaMetrics":
				check("ingest ≥ 1.5× VictoriaMetrics", r, "%.2f×", r >= 1.5)
			}
		}
		check("ingest ≥ 50% of decode-only", 100*vi/ceiling, "%.0f%%", vi >= ceiling/2)
		w("\n")
	}

	// OTLP traces.
	if rp.traces != nil {
		c, tp := rp.tracesCfg, rp.traceReplay
		w("### OTLP traces → span metrics\n\n")
		w("Two loads, each into a fresh receiver: **replay** — %d pre-encoded OTLP/HTTP protobuf export requests of %d spans (%d services, %d operations, 1 in %d an error), %s spans, sent by %d concurrent senders at full speed, so the receiver is the bottleneck; **telemetrygen** (%s) — %d workers × %d traces of %d spans over OTLP/gRPC, unthrottled, batches of %d: its SDK's batch processor drops spans its queue cannot hold, so it measures telemetrygen as much as the receiver. Spans/s is the spans the receiver counted (`vigil_span_metrics_spans_total`, `otelcol_receiver_accepted_spans`) over the send time.\n\n",
			tp.Config.Requests, tp.Config.SpansPerRequest, tp.Config.Services, tp.Config.Operations, tp.Config.ErrorEvery, thousands(tp.Spans), o.senders,
			filepath.Base(c.telemetrygen), c.workers, c.traces, 1+c.childSpans, c.batchSize)
		w("| load | receiver | spans sent | spans counted | spans/s | CPU s per million spans | peak RSS, MiB |\n|---|---|--:|--:|--:|--:|--:|\n")
		for _, load := range rp.traceLoads {
			for _, n := range []string{"Vigil", "otelcol"} {
				rs, ok := rp.traces[n+"/"+load]
				if !ok {
					continue
				}
				var sps, cpu, hwm, cnt []float64
				for _, r := range rs {
					sps = append(sps, r.spansPerSec())
					cpu = append(cpu, r.CPU.Seconds()/float64(r.Spans)*1e6)
					hwm = append(hwm, float64(r.HWM)/(1<<20))
					cnt = append(cnt, float64(r.Spans))
				}
				w("| %s | %s | %s | %.0f | %.0f | %.2f | %.0f |\n", load, n, thousands(rs[0].Sent), median(cnt), median(sps), median(cpu), median(hwm))
			}
		}
		w("\nReceivers: Vigil %s", rp.vigilVersion())
		if rp.otelcolVersion != "" {
			w("; otelcol %s, pipeline otlp → spanmetrics connector (exponential histograms) → prometheus exporter", rp.otelcolVersion)
		}
		w(".\n\n")
	}
	if rp.tracesNote != "" {
		w("OTLP traces: %s\n\n", rp.tracesNote)
	}

	if rp.cpuProfile != "" {
		w("### Profiles of Vigil\n\n")
		w("`%s` and `%s` (`go tool pprof -top <file>`), from %s.\n\n", filepath.Base(rp.cpuProfile), filepath.Base(rp.heapProfile), rp.profileSource)
		w("CPU, top functions by own time:\n\n```\n%s```\n\n", pprofTop(rp.cpuProfile, "-top", "-nodecount=20"))
		w("Allocations during ingest, top sites by bytes allocated:\n\n```\n%s```\n\n", pprofTop(rp.heapProfile, "-top", "-nodecount=12", "-sample_index=alloc_space"))
		w("Heap in use after ingest:\n\n```\n%s```\n\n", pprofTop(rp.heapProfile, "-top", "-nodecount=10", "-sample_index=inuse_space"))
	}

	w("### Every repetition\n\n| target | rep | samples/s | first round s | later rounds s | CPU s | target CPU share of wall | harness CPU s | RSS idle → after, MiB | HWM MiB | failed requests | verified |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for _, t := range rp.targets {
		for i, r := range rp.results[t.name] {
			v := "yes"
			if r.VerifyErr != nil {
				v = "no: " + strings.ReplaceAll(tailString(r.VerifyErr.Error(), 300), "|", "\\|")
			}
			w("| %s | %d | %.0f | %.2f | %.2f | %.2f | %.0f%% | %.2f | %d → %d | %d | %d | %s |\n", t.name, i+1, r.samplesPerSec(), r.FirstRound.Seconds(), r.LaterRounds.Seconds(),
				r.CPU.Seconds(), 100*r.CPU.Seconds()/r.Elapsed.Seconds(), r.LoadgenCPU.Seconds(), r.RSSIdle>>20, r.RSSAfter>>20, r.HWM>>20, r.Failed, v)
		}
	}
	w("\nQueries (each run %d times after a warm-up, median), at the time of the last sample; range queries span all rounds with a step of %s:\n\n", o.queryRuns, p.Config.Interval)
	for _, q := range querySet(p) {
		w("- %s: `%s`\n", q.name, q.expr)
	}
	return b.String()
}

func (rp *report) vigilVersion() string {
	if rp.opts.vigil == "" {
		return ""
	}
	return firstLine(exec.Command(rp.opts.vigil, "version"))
}

func pprofTop(path string, args ...string) string {
	out, err := exec.Command("go", append(append([]string{"tool", "pprof"}, args...), path)...).Output()
	if err != nil {
		return fmt.Sprintf("go tool pprof %s: %v\n", path, err)
	}
	// Drop pprof's header lines up to the column titles.
	s := string(out)
	if i := strings.Index(s, "      flat  flat%"); i >= 0 {
		s = s[i:]
	}
	return s
}

func thousands(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
