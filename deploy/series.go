package deploy

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/semconv"
)

// Series names written by the deploy package.
const (
	// DeploymentInfo is 1 for each service/environment's current deployment.
	DeploymentInfo = semconv.DeploymentInfo
	// DeploymentStarted is the current deployment's start, in Unix seconds.
	// A new series starts with a 0 sample just before the start value, so
	// changes(...[1m]) > 0 marks a deployment (a Grafana annotation query).
	DeploymentStarted = "vigil_deployment_started_timestamp_seconds"
	// VerdictInfo is the score (0..1) of the latest verdict per service/version.
	VerdictInfo = semconv.VerdictInfo
	// VerdictTimestamp is when the latest verdict per service/version was reached.
	VerdictTimestamp = "vigil_verdict_timestamp_seconds"
)

// seriesWriter re-writes the deployment and verdict series every interval
// so that instant queries (5m lookback) always see them.
type seriesWriter struct {
	out      storage.AppendableV2
	interval time.Duration

	mu       sync.Mutex
	verdicts map[string]verdict.Verdict // latest per service/environment/version
	started  map[string]bool            // started series already begun
}

func newSeriesWriter(out storage.AppendableV2, interval time.Duration) *seriesWriter {
	return &seriesWriter{out: out, interval: interval, verdicts: map[string]verdict.Verdict{}, started: map[string]bool{}}
}

func (w *seriesWriter) setVerdict(v verdict.Verdict) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.verdicts[v.Service+"\xff"+v.Environment+"\xff"+v.Version] = v
}

func deploymentLabels(d Deployment) (info, started labels.Labels) {
	b := labels.NewScratchBuilder(10)
	add := func(k, v string) {
		if v != "" {
			b.Add(k, v)
		}
	}
	add(labels.MetricName, DeploymentInfo)
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
	add(labels.MetricName, DeploymentStarted)
	add(semconv.LabelService, d.Service)
	add(semconv.LabelNamespace, d.Namespace)
	add(semconv.LabelEnvironment, d.Environment)
	add(semconv.LabelVersion, d.Version)
	b.Sort()
	started = b.Labels()
	return info, started
}

func verdictLabels(v verdict.Verdict) (info, ts labels.Labels) {
	b := labels.NewScratchBuilder(8)
	add := func(k, val string) {
		if val != "" {
			b.Add(k, val)
		}
	}
	add(labels.MetricName, VerdictInfo)
	add(semconv.LabelService, v.Service)
	add(semconv.LabelEnvironment, v.Environment)
	add(semconv.LabelVersion, v.Version)
	add("baseline", v.Baseline)
	add(semconv.LabelDecision, string(v.Decision))
	b.Sort()
	info = b.Labels()
	b.Reset()
	add(labels.MetricName, VerdictTimestamp)
	add(semconv.LabelService, v.Service)
	add(semconv.LabelEnvironment, v.Environment)
	add(semconv.LabelVersion, v.Version)
	add(semconv.LabelDecision, string(v.Decision))
	b.Sort()
	ts = b.Labels()
	return info, ts
}

// write appends one sample of every series at now.
func (w *seriesWriter) write(ctx context.Context, current []Deployment, now time.Time) error {
	app := w.out.AppenderV2(ctx)
	t := now.UnixMilli()
	var errs int
	appendOne := func(ls labels.Labels, t int64, v float64) {
		if _, err := app.Append(0, ls, 0, t, v, nil, nil, storage.AOptions{}); err != nil {
			errs++
		}
	}
	w.mu.Lock()
	for _, d := range current {
		info, started := deploymentLabels(d)
		appendOne(info, t, 1)
		if k := started.String(); !w.started[k] {
			w.started[k] = true
			appendOne(started, t-1, 0)
		}
		appendOne(started, t, float64(d.StartedAt.UnixMilli())/1000)
	}
	for _, v := range w.verdicts {
		info, ts := verdictLabels(v)
		appendOne(info, t, v.Score)
		appendOne(ts, t, float64(v.EvaluatedAt.UnixMilli())/1000)
	}
	w.mu.Unlock()
	if err := app.Commit(); err != nil {
		return fmt.Errorf("write deployment series: %w", err)
	}
	if errs > 0 {
		return fmt.Errorf("write deployment series: %d samples refused", errs)
	}
	return nil
}
