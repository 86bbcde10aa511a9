package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"

	"github.com/vigilhq/vigil/bench/loadgen"
	"github.com/vigilhq/vigil/bench/procstat"
)

// query is one query of the fixed latency set.
type query struct {
	name  string
	expr  string
	isRng bool
}

// querySet is run on every target on the same data: instant and range,
// selective (one series; 256 hosts by regex) and aggregating (rate summed
// by cluster over the series of one job: a dashboard panel's query).
func querySet(p *loadgen.Payload) []query {
	one := fmt.Sprintf(`%s{instance=%q}`, loadgen.MetricName(1%p.Config.Metrics), loadgen.Instance(0, 0))
	m := loadgen.MetricName(2 % p.Config.Metrics)
	agg := fmt.Sprintf("sum(rate(%s[%%s]))", m)
	if p.Config.Labels >= 4 { // job and cluster exist
		agg = fmt.Sprintf(`sum by (cluster) (rate(%s{job="job-3"}[%%s]))`, m)
	}
	return []query{
		{"instant, one series", one, false},
		{"instant, 256 hosts (regex)", fmt.Sprintf(`count(%s{instance=~"10\\.0\\.1\\..*"})`, m), false},
		{"instant, sum(rate) of one job", fmt.Sprintf(agg, "5m"), false},
		{"range, one series", fmt.Sprintf("rate(%s[1m])", one), true},
		{"range, sum(rate) of one job", fmt.Sprintf(agg, "1m"), true},
	}
}

// ingestRep is what one repetition measured on one target.
type ingestRep struct {
	Samples        int
	Elapsed        time.Duration
	FirstRound     time.Duration // creates the series
	LaterRounds    time.Duration // appends to existing series
	CPU            time.Duration // target's user+system time during ingest
	LoadgenCPU     time.Duration // the load generator's own during ingest
	RSSIdle        int64
	RSSAfter, HWM  int64
	ActiveSeries   int
	Failed         int
	FirstError     string
	VerifyErr      error
	QueryLatencies map[string]time.Duration // median of the runs
}

func (r ingestRep) samplesPerSec() float64 { return float64(r.Samples) / r.Elapsed.Seconds() }
func (r ingestRep) laterSamplesPerSec(p *loadgen.Payload) float64 {
	if r.LaterRounds <= 0 {
		return 0
	}
	return float64(p.Samples-p.Config.Series) / r.LaterRounds.Seconds()
}
func (r ingestRep) cpuPerMillion() float64 { return r.CPU.Seconds() / float64(r.Samples) * 1e6 }
func (r ingestRep) bytesPerSeries() float64 {
	return float64(r.RSSAfter-r.RSSIdle) / float64(r.ActiveSeries)
}

type runConfig struct {
	dataDir    string
	senders    int
	queryRuns  int
	keepData   bool
	hook       func(r *running) // called after ingest, before queries (profiles)
	idleSettle time.Duration
}

// measure starts t on a fresh data directory, replays p, verifies it and
// times the query set, then stops t.
func measure(ctx context.Context, t target, p *loadgen.Payload, rc runConfig, n int) (ingestRep, error) {
	var out ingestRep
	dir := filepath.Join(rc.dataDir, fmt.Sprintf("%s-%d", t.name, n))
	_ = os.RemoveAll(dir)
	r, err := start(ctx, t, dir)
	if err != nil {
		return out, err
	}
	defer func() {
		r.stop()
		if !rc.keepData {
			_ = os.RemoveAll(dir)
		}
	}()
	time.Sleep(rc.idleSettle)
	idle, err := procstat.Read(r.pid())
	if err != nil {
		return out, err
	}
	self0 := selfCPU()
	res, err := loadgen.Replay(ctx, loadgen.SenderConfig{URL: r.writeURL(), Senders: rc.senders, Retries: 5, Timeout: time.Minute}, p)
	if err != nil {
		return out, fmt.Errorf("%s: replay: %w", t.name, err)
	}
	after, err := procstat.Read(r.pid())
	if err != nil {
		return out, err
	}
	out = ingestRep{
		Samples: p.Samples, Elapsed: res.Elapsed, CPU: after.CPU - idle.CPU, LoadgenCPU: selfCPU() - self0,
		RSSIdle: idle.RSS, RSSAfter: after.RSS, HWM: after.HWM, ActiveSeries: p.ActiveSeries,
		Failed: res.Failed, FirstError: res.FirstError, QueryLatencies: map[string]time.Duration{},
	}
	out.FirstRound = res.Rounds[0].Elapsed
	for _, rr := range res.Rounds[1:] {
		out.LaterRounds += rr.Elapsed
	}
	slog.Info("ingested", "target", t.name, "rep", n, "samples_per_s", int(out.samplesPerSec()),
		"cpu_s_per_M", fmt.Sprintf("%.2f", out.cpuPerMillion()), "rss_MiB", after.RSS>>20, "failed", res.Failed, "first_error", res.FirstError)

	if t.flush != nil {
		if err := t.flush(ctx, r.base()); err != nil {
			return out, fmt.Errorf("%s: flush: %w", t.name, err)
		}
	}
	q, err := loadgen.NewQuerier(r.base())
	if err != nil {
		return out, err
	}
	// Data may take a moment to become searchable (VictoriaMetrics indexes
	// new series in the background): retry verification for up to 30 s.
	for deadline := time.Now().Add(30 * time.Second); ; {
		out.VerifyErr = loadgen.Verify(ctx, q, r.base(), p)
		if out.VerifyErr == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if out.VerifyErr != nil {
		slog.Warn("verification failed", "target", t.name, "err", out.VerifyErr)
	} else {
		slog.Info("verified", "target", t.name)
	}
	if rc.hook != nil {
		rc.hook(r)
	}
	rng := v1.Range{Start: p.Timestamp(0), End: p.Last(), Step: p.Config.Interval}
	for _, qq := range querySet(p) {
		var ds []time.Duration
		for i := range rc.queryRuns + 1 {
			s := time.Now()
			if qq.isRng {
				_, err = q.Range(ctx, qq.expr, rng)
			} else {
				_, err = q.Instant(ctx, qq.expr, p.Last())
			}
			if err != nil {
				return out, fmt.Errorf("%s: %w", t.name, err)
			}
			if i > 0 { // the first run warms caches
				ds = append(ds, time.Since(s))
			}
		}
		out.QueryLatencies[qq.name] = median(ds)
	}
	slog.Info("queries timed", "target", t.name)
	return out, nil
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median[T int64 | float64 | time.Duration](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// procSample reads pid's resource use; a failed read is zero.
func procSample(pid int) procstat.Sample {
	s, err := procstat.Read(pid)
	if err != nil {
		slog.Warn("read /proc", "pid", pid, "err", err)
	}
	return s
}

func procCPU(pid int) time.Duration { return procSample(pid).CPU }
