package deploy

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/semconv"
)

// Series names written by the deploy package.
const (
	// DeploymentInfo is 1 for each service/environment's current deployment.
	// The series of a deployment another replaces gets a staleness marker
	// at once, so that only the current one is seen.
	DeploymentInfo = semconv.DeploymentInfo
	// DeploymentStarted is the current deployment's start, in Unix seconds.
	// A new series starts with a 0 sample just before the start value, so
	// changes(...[1m]) > 0 marks a deployment (a Grafana annotation query).
	DeploymentStarted = semconv.DeploymentStarted
	// VerdictInfo is the score (0..1) of the latest verdict per
	// service/version: while a verification runs its decision is
	// inconclusive; when it becomes final, the series of the earlier
	// decision gets a staleness marker, so each verification has one series.
	VerdictInfo = semconv.VerdictInfo
	// VerdictTimestamp is when the final verdict per service/version was
	// reached. A running verification has none, so its value never changes.
	VerdictTimestamp = semconv.VerdictTimestamp
)

// seriesWriter re-writes the deployment and verdict series every interval
// so that instant queries (5m lookback) always see them, and ends with a
// staleness marker, as Prometheus's rule manager does, every series it
// wrote last time and no longer writes (a replaced deployment, the earlier
// decision of a verification).
type seriesWriter struct {
	out      storage.AppendableV2
	interval time.Duration

	// maxVerdicts bounds verdicts (and so the verdict series): beyond it the
	// oldest go, ended by a staleness marker (0: no bound).
	maxVerdicts int

	// writeMu serialises writeLatest from its snapshot to its commit (only
	// writers take it): two writes whose snapshots were taken in one order
	// and committed in the other lose the staleness markers of the later
	// one, refused as out of order, and the series they should have ended
	// stay visible for five minutes — beyond deploy.max_deployments under
	// a flood of events.
	writeMu sync.Mutex

	mu       sync.Mutex
	verdicts map[string]verdict.Verdict // latest per service/environment/version
	started  map[string]bool            // started series begun, of the last write
	written  map[uint64]labels.Labels   // the series of the last write
	last     int64                      // the timestamp of the last write, in ms
}

func newSeriesWriter(out storage.AppendableV2, interval time.Duration) *seriesWriter {
	return &seriesWriter{out: out, interval: interval, verdicts: map[string]verdict.Verdict{}, started: map[string]bool{}, written: map[uint64]labels.Labels{}}
}

func verdictKey(v verdict.Verdict) string {
	return v.Service + "\xff" + v.Environment + "\xff" + v.Version
}

func (w *seriesWriter) setVerdict(v verdict.Verdict) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.verdicts[verdictKey(v)] = trimmed(v)
	for w.maxVerdicts > 0 && len(w.verdicts) > w.maxVerdicts {
		oldest := ""
		for k, o := range w.verdicts {
			if oldest == "" || o.EvaluatedAt.Before(w.verdicts[oldest].EvaluatedAt) {
				oldest = k
			}
		}
		delete(w.verdicts, oldest)
	}
}

// trimmed is what the series need of a verdict: its labels and score, not
// its evidence and history.
func trimmed(v verdict.Verdict) verdict.Verdict {
	v.Signals, v.ErrorLogs, v.ErrorTraces, v.Summary = nil, nil, nil, ""
	return v
}

// restore takes up after a restart: the current deployments (whose started
// series are already begun) and the final verdicts (newest first) are
// what the last process wrote, so that a deployment recorded now marks the
// one it replaces stale.
func (w *seriesWriter) restore(current []Deployment, final []verdict.Verdict) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, v := range final {
		if v.Stage == verdict.StageWatch && v.Decision != verdict.Rollback {
			continue // as showVerdict: only a watch's regression is shown
		}
		if _, ok := w.verdicts[verdictKey(v)]; !ok {
			w.verdicts[verdictKey(v)] = trimmed(v)
		}
	}
	for _, d := range current {
		_, started := deploymentLabels(d)
		w.started[started.String()] = true
	}
	w.written = w.series(current, func(ls labels.Labels, _ float64) {})
}

func deploymentLabels(d Deployment) (info, started labels.Labels) {
	b := labels.NewScratchBuilder(10)
	add := func(k, v string) {
		if v != "" {
			b.Add(k, v)
		}
	}
	add(model.MetricNameLabel, DeploymentInfo)
	add(semconv.LabelService, d.Service)
	add(semconv.LabelNamespace, d.Namespace)
	add(semconv.LabelEnvironment, d.Environment)
	add(semconv.LabelVersion, d.Version)
	add(semconv.LabelPreviousVersion, d.PreviousVersion)
	add(semconv.LabelPipeline, d.Pipeline)
	add(semconv.LabelCommit, d.Commit)
	add(semconv.LabelStrategy, d.Strategy)
	b.Sort()
	info = b.Labels()
	b.Reset()
	add(model.MetricNameLabel, DeploymentStarted)
	add(semconv.LabelService, d.Service)
	add(semconv.LabelNamespace, d.Namespace)
	add(semconv.LabelEnvironment, d.Environment)
	add(semconv.LabelVersion, d.Version)
	b.Sort()
	started = b.Labels()
	return info, started
}

// Labels of the verdict series besides the service's.
const (
	// LabelMode is the service's rollback mode when the verdict was
	// reached: shadow (recorded, never acted on) or enforce.
	LabelMode = "mode"
	// LabelStage is "watch" on the verdict of a regression found after the
	// promotion; a verification's verdicts have none.
	LabelStage = "stage"
)

func watchStage(v verdict.Verdict) string {
	if v.Stage == verdict.StageWatch {
		return verdict.StageWatch
	}
	return ""
}

func verdictLabels(v verdict.Verdict) (info, ts labels.Labels) {
	b := labels.NewScratchBuilder(8)
	add := func(k, val string) {
		if val != "" {
			b.Add(k, val)
		}
	}
	add(model.MetricNameLabel, VerdictInfo)
	add(semconv.LabelService, v.Service)
	add(semconv.LabelEnvironment, v.Environment)
	add(semconv.LabelVersion, v.Version)
	add(semconv.LabelBaseline, v.Baseline)
	add(semconv.LabelDecision, string(v.Decision))
	add(LabelMode, v.Mode)
	add(LabelStage, watchStage(v))
	b.Sort()
	info = b.Labels()
	b.Reset()
	add(model.MetricNameLabel, VerdictTimestamp)
	add(semconv.LabelService, v.Service)
	add(semconv.LabelEnvironment, v.Environment)
	add(semconv.LabelVersion, v.Version)
	add(semconv.LabelDecision, string(v.Decision))
	add(LabelMode, v.Mode)
	add(LabelStage, watchStage(v))
	b.Sort()
	ts = b.Labels()
	return info, ts
}

// series calls emit with every series to write and its value, and
// returns them by hash.
func (w *seriesWriter) series(current []Deployment, emit func(ls labels.Labels, v float64)) map[uint64]labels.Labels {
	out := map[uint64]labels.Labels{}
	add := func(ls labels.Labels, v float64) {
		out[ls.Hash()] = ls
		emit(ls, v)
	}
	for _, d := range current {
		info, started := deploymentLabels(d)
		add(info, 1)
		add(started, float64(d.StartedAt.UnixMilli())/1000)
	}
	for _, v := range w.verdicts {
		info, ts := verdictLabels(v)
		add(info, v.Score)
		if v.Final {
			add(ts, float64(v.EvaluatedAt.UnixMilli())/1000)
		}
	}
	return out
}

// writeLatest writes the current deployments and the time, both taken
// once the writes before it are committed, so that each write supersedes
// the one before it.
func (w *seriesWriter) writeLatest(ctx context.Context, current func() []Deployment, now func() time.Time) error {
	w.writeMu.Lock()
	defer w.writeMu.Unlock()
	return w.write(ctx, current(), now())
}

// write appends one sample of every series at now, and a staleness marker
// to each series of the last write that is no longer written. A write in
// the same millisecond as the last one is written a millisecond after it,
// so that its staleness markers are not refused as duplicate samples.
func (w *seriesWriter) write(ctx context.Context, current []Deployment, now time.Time) error {
	app := w.out.AppenderV2(ctx)
	var errs int
	appendOne := func(ls labels.Labels, t int64, v float64) {
		if _, err := app.Append(0, ls, 0, t, v, nil, nil, storage.AOptions{}); err != nil {
			errs++
		}
	}
	w.mu.Lock()
	t := max(now.UnixMilli(), w.last+1)
	w.last = t
	// started holds the started series of this write only: one that
	// comes back later (a version deployed again) begins again with a 0.
	started := map[string]bool{}
	written := w.series(current, func(ls labels.Labels, v float64) {
		if ls.Get(model.MetricNameLabel) == DeploymentStarted {
			k := ls.String()
			if !w.started[k] {
				appendOne(ls, t-1, 0)
			}
			started[k] = true
		}
		appendOne(ls, t, v)
	})
	w.started = started
	for h, ls := range w.written {
		if _, ok := written[h]; !ok {
			appendOne(ls, t, math.Float64frombits(value.StaleNaN))
		}
	}
	w.written = written
	w.mu.Unlock()
	if err := app.Commit(); err != nil {
		return fmt.Errorf("write deployment series: %w", err)
	}
	if errs > 0 {
		return fmt.Errorf("write deployment series: %d samples refused", errs)
	}
	return nil
}
