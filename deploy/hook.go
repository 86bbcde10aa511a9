package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/auth"
)

// Options are what a Hook is built from.
type Options struct {
	Config Config
	// Dir is where the deployments file lives (the storage path).
	Dir string
	// Out receives the deployment and verdict series.
	Out storage.AppendableV2
	// Querier runs the signal queries (the embedded PromQL engine).
	Querier verdict.Querier
	// Evidence reads the collector's recent error logs and traces (optional).
	Evidence verdict.Evidence
	// SeriesLabels are the labels of the series Vigil derives (optional).
	SeriesLabels verdict.SeriesLabels
	// Actors perform rollbacks (optional; none: Vigil only reports).
	Actors []Actor
	// AllowActions lets the hook run rollback actions. The server sets it
	// when requests are authenticated (auth.tokens), so that only a caller
	// with the deploy scope can start a verification that ends in an
	// action, and only an admin can roll back by hand.
	AllowActions bool
	Logger       *slog.Logger
	Registerer   prometheus.Registerer
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Actor rolls a service back.
type Actor interface {
	// Kind names the action ("webhook", "kubernetes").
	Kind() string
	// Applies reports whether the service's catalog entry configures this action.
	Applies(svc catalog.Service) bool
	// Rollback performs the action and returns what it acted on.
	Rollback(ctx context.Context, svc catalog.Service, d Deployment, v verdict.Verdict) (target string, err error)
}

// Hook is the deploy component: deployment records, the verification jobs
// that produce verdicts, the series and the rollback actions.
//
// No lock is held across a query, a file write or an action: a job's lock
// guards its state only; an evaluation runs outside it (one at a time per
// job) and its result is applied under it; rollback actions run in their
// own goroutines. So a slow webhook or query holds up neither /metrics nor
// other verifications, listings or polls.
type Hook struct {
	cfg     Config
	store   *Store
	engine  *verdict.Engine
	catalog *catalog.Catalog
	series  *seriesWriter
	actors  []Actor
	act     bool
	ghKey   []byte
	logger  *slog.Logger
	now     func() time.Time
	limiter *rollbackLimiter
	// querier and seriesLabels are the engine's, for backtests.
	querier      verdict.Querier
	seriesLabels verdict.SeriesLabels
	backtesting  atomic.Bool // a backtest runs (one at a time)

	// ctx is the hook's life: evaluations and actions run under it, not
	// under the request that started them.
	ctx    context.Context
	cancel context.CancelFunc
	acting sync.WaitGroup // rollback actions in flight

	mu     sync.Mutex
	jobs   map[string]*job
	closed bool

	running atomic.Int64 // jobs without a final verdict

	events   *prometheus.CounterVec
	verdicts *prometheus.CounterVec
	actions  *prometheus.CounterVec
	evalDur  prometheus.Histogram
	runningG prometheus.GaugeFunc
}

// job is one verification. Its fields above mu never change.
type job struct {
	id           string
	req          verdict.Request
	deploymentID string
	created      time.Time
	// expires is when a job still without a final verdict ends with an
	// error verdict: its window after its start (or creation), and a grace.
	expires time.Time
	// principal is who started it (the token's name).
	principal string
	// mayAct is false when the verdict relies on request-supplied signals
	// the configuration does not trust: then it is never acted on.
	mayAct bool
	// stage is verdict.StageVerify, or StageWatch for the watch that
	// follows a promotion.
	stage string

	mu sync.Mutex
	// watch is the watch that followed this verification's promotion.
	watch     *job
	latest    *verdict.Verdict
	final     bool
	lastErr   string
	errs      int       // evaluations failed in a row
	evaluated time.Time // when the last evaluation ran
	busy      bool      // an evaluation is in flight
}

const (
	// maxRunning bounds the verifications without a final verdict.
	maxRunning = 1000
	// maxJobs bounds the verifications kept in memory, final ones included
	// (they are kept a day for polls; their verdicts stay in the store).
	maxJobs = 10 * maxRunning
	// keepFinal is how long a final verification can still be polled.
	keepFinal = 24 * time.Hour
	// expiryGrace is how long past its window an unfinished verification lives.
	expiryGrace = 5 * time.Minute
	// maxClockSkew is how far in the future a request's start may lie.
	maxClockSkew = time.Minute
	// evaluationTimeout bounds one evaluation (all its queries).
	evaluationTimeout = time.Minute
	// actionTimeout bounds one rollback action.
	actionTimeout = 30 * time.Second
	// evalWorkers is how many verifications the background loop evaluates at once.
	evalWorkers = 4
)

// errTooMany is returned when maxRunning verifications are running.
var errTooMany = errors.New("too many verifications running")

// errClosed is returned once the hook is shutting down.
var errClosed = errors.New("the deploy hook is shutting down")

// New builds the hook, opening the deployments file under opts.Dir.
func New(opts Options) (*Hook, error) {
	cfg := opts.Config
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	if opts.Out == nil || opts.Querier == nil {
		return nil, errors.New("deploy: storage and querier are required")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Hook{cfg: cfg, actors: opts.Actors, act: opts.AllowActions, logger: logger, now: opts.Now, jobs: map[string]*job{},
		querier: opts.Querier, seriesLabels: opts.SeriesLabels}
	if h.now == nil {
		h.now = time.Now
	}
	if cfg.Catalog != "" {
		c, err := catalog.Load(cfg.Catalog)
		if err != nil {
			return nil, fmt.Errorf("deploy.catalog: %w", err)
		}
		h.catalog = c
	}
	if cfg.GitHubSecretFile != "" {
		b, err := os.ReadFile(cfg.GitHubSecretFile)
		if err != nil {
			return nil, fmt.Errorf("deploy.github_secret_file: %w", err)
		}
		if h.ghKey = []byte(strings.TrimSpace(string(b))); len(h.ghKey) == 0 {
			return nil, fmt.Errorf("deploy.github_secret_file %s is empty", cfg.GitHubSecretFile)
		}
	}
	var err error
	h.engine, err = verdict.New(verdict.Config{
		Step: time.Duration(cfg.Step), RateWindow: time.Duration(cfg.RateWindow), Policy: cfg.Policy, LinkBase: cfg.ExternalURL,
		SeriesLabels: opts.SeriesLabels,
	}, opts.Querier, opts.Evidence)
	if err != nil {
		return nil, err
	}
	limits := StoreLimits{Retention: time.Duration(cfg.Retention), MaxDeployments: cfg.MaxDeployments, Now: h.now}
	if h.store, err = OpenStore(filepath.Join(opts.Dir, "deployments"), limits, logger); err != nil {
		return nil, err
	}
	h.limiter = newRollbackLimiter(time.Duration(cfg.RollbackCooldown), time.Duration(cfg.Retention), h.store.List("", "", 0))
	h.series = newSeriesWriter(opts.Out, time.Duration(cfg.SeriesInterval))
	h.series.maxVerdicts = cfg.MaxDeployments
	h.series.restore(h.store.Current(), h.store.Verdicts("", 0))
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_deploy_events_total", Help: "Deployment events received, by format and result (recorded, updated, rejected).",
	}, []string{"format", "result"})
	h.verdicts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_verdicts_total", Help: "Final verdicts reached, by decision and the service's rollback mode (enforce: acted on; shadow: recorded only).",
	}, []string{"decision", "mode"})
	h.actions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_rollback_actions_total", Help: "Rollback actions, by kind and result (success, error, refused: by the rate limits, or the target no longer ran the condemned version).",
	}, []string{"kind", "result"})
	h.evalDur = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "vigil_verdict_evaluation_duration_seconds", Help: "Time to evaluate a verdict (all signal queries).",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
	})
	h.runningG = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "vigil_verifications_running", Help: "Verifications without a final verdict.",
	}, func() float64 { return float64(h.running.Load()) })
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(h.events, h.verdicts, h.actions, h.evalDur, h.runningG)
	}
	return h, nil
}

// Store is the deployment store.
func (h *Hook) Store() *Store { return h.store }

// Catalog is the service catalog (nil without deploy.catalog).
func (h *Hook) Catalog() *catalog.Catalog { return h.catalog }

// Close waits for the rollback actions in flight, stops the evaluations
// and closes the store.
func (h *Hook) Close() error {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.acting.Wait()
	h.cancel()
	return h.store.Close()
}

// Run re-writes the series, compacts the store and advances running
// verifications (so that a verdict is reached, and acted on, even when
// nobody polls) until ctx ends.
func (h *Hook) Run(ctx context.Context) {
	seriesT := time.NewTicker(time.Duration(h.cfg.SeriesInterval))
	defer seriesT.Stop()
	evalT := time.NewTicker(time.Duration(h.cfg.Step))
	defer evalT.Stop()
	h.writeSeries(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-seriesT.C:
			h.writeSeries(ctx)
			if err := h.store.Compact(); err != nil {
				h.logger.Warn("Compacting the deployments file failed", "err", err)
			}
		case <-evalT.C:
			h.advanceAll()
			h.expireJobs()
		}
	}
}

func (h *Hook) writeSeries(ctx context.Context) {
	if err := h.series.writeLatest(ctx, h.store.Current, h.now); err != nil {
		h.logger.Warn("Writing deployment series failed", "err", err)
	}
}

// RecordDeployment stores a decoded deployment event.
func (h *Hook) RecordDeployment(ctx context.Context, d Deployment) (Deployment, bool, error) {
	rec, created, err := h.store.Record(d)
	if err != nil {
		return rec, created, err
	}
	h.logger.Info("Deployment recorded", "id", rec.ID, "service", rec.Service, "environment", rec.Environment,
		"version", rec.Version, "previous_version", rec.PreviousVersion, "source", rec.Source, "new", created)
	h.writeSeries(ctx)
	return rec, created, nil
}

// VerifyRequest starts a verification.
type VerifyRequest struct {
	Service     string           `json:"service"`
	Environment string           `json:"environment,omitempty"`
	Version     string           `json:"version"`
	Baseline    string           `json:"baseline,omitempty"`
	Window      string           `json:"window,omitempty"` // a duration such as 5m
	Start       *time.Time       `json:"start,omitempty"`
	Signals     []verdict.Signal `json:"signals,omitempty"`
}

// RequestError is a verify request refused as given: Code is the HTTP
// status that says so (400, or 403 when the caller lacks a scope).
type RequestError struct {
	Code int
	Err  error
}

func (e *RequestError) Error() string { return e.Err.Error() }
func (e *RequestError) Unwrap() error { return e.Err }

func badRequest(err error) error { return &RequestError{Code: 400, Err: err} }

// StartVerification resolves the request against the recorded deployments
// and the catalog and starts a verification, or joins the one already
// running for the same request; created reports a new one. by is who asks:
// what a request may bring depends on its scopes.
func (h *Hook) StartVerification(ctx context.Context, by auth.Principal, r VerifyRequest) (st VerifyStatus, created bool, err error) {
	if r.Service == "" {
		return st, false, badRequest(errors.New("service: missing"))
	}
	if r.Version == "" {
		return st, false, badRequest(errors.New("version: missing"))
	}
	if err := h.checkRequestSignals(by, r.Signals); err != nil {
		return st, false, err
	}
	var svc catalog.Service
	var inCatalog bool
	if h.catalog != nil {
		svc, inCatalog = h.catalog.Service(r.Service, r.Environment)
	}
	env := r.Environment
	if env == "" && inCatalog {
		env = svc.Environment
	}
	var dep *Deployment
	for _, d := range h.store.List(r.Service, env, 50) {
		if d.Version == r.Version {
			dep = &d
			break
		}
	}
	if env == "" && dep != nil {
		env = dep.Environment
	}
	req := verdict.Request{Service: r.Service, Environment: env, Version: r.Version, Baseline: r.Baseline, Window: time.Duration(h.cfg.Window)}
	if inCatalog {
		req.Matchers = svc.Matchers
		req.Namespace = svc.Namespace
	}
	if req.Baseline == "" && dep != nil {
		req.Baseline = dep.PreviousVersion
	}
	if req.Baseline == "" {
		req.Baseline = h.previousVersion(r.Service, env, r.Version, dep)
	}
	if req.Baseline == "" {
		// A first deploy: judged against the catalog's SLOs alone.
		if !hasSLOs(svc, inCatalog) {
			return st, false, badRequest(fmt.Errorf("baseline: missing (give one, or record a deployment of %s %s with previousVersion; a first deploy, with no previous version, is judged against the service's SLOs in the catalog, and %s has none)",
				r.Service, r.Version, r.Service))
		}
		req.FirstDeploy = true
	}
	if r.Window != "" {
		w, err := parseDuration(r.Window)
		if err != nil || w <= 0 {
			return st, false, badRequest(fmt.Errorf("window: %q is not a positive duration such as 5m", r.Window))
		}
		if w > time.Duration(h.cfg.MaxWindow) {
			return st, false, badRequest(fmt.Errorf("window: %s is longer than deploy.max_window (%s)", r.Window, h.cfg.MaxWindow))
		}
		req.Window = w
	}
	// Without a start (none given, no deployment recorded) the
	// verification starts now, and later identical requests join it: tools
	// such as Argo Rollouts' web provider POST the same body every interval.
	now := h.now()
	startKey := "now"
	switch {
	case r.Start != nil:
		s := *r.Start
		switch {
		case dep != nil && s.Before(dep.StartedAt):
			return st, false, badRequest(fmt.Errorf("start: %s is before the start of the recorded deployment of %s %s (%s)",
				s.UTC().Format(time.RFC3339), r.Service, r.Version, dep.StartedAt.UTC().Format(time.RFC3339)))
		case s.Before(now.Add(-req.Window)):
			return st, false, badRequest(fmt.Errorf("start: %s is more than one window (%s) ago; record the deployment and verify it without a start",
				s.UTC().Format(time.RFC3339), model.Duration(req.Window)))
		case s.After(now.Add(maxClockSkew)):
			return st, false, badRequest(fmt.Errorf("start: %s is in the future", s.UTC().Format(time.RFC3339)))
		}
		req.Start = s
	case dep != nil:
		req.Start = dep.StartedAt
	default:
		req.Start = now
	}
	if r.Start != nil || dep != nil {
		startKey = strconv.FormatInt(req.Start.UnixMilli(), 10)
	}
	req.Signals = append(ServiceSignals(svc, inCatalog, h.cfg.Signals), r.Signals...)
	if err := req.Validate(); err != nil {
		return st, false, badRequest(err)
	}
	mayAct := len(r.Signals) == 0 || (h.cfg.AllowRequestSignals && by.Has(auth.ScopeDeploy))
	custom, _ := json.Marshal(r.Signals)
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\xff%s\xff%s\xff%s\xff%s\xff%d\xff%s\xff%t", req.Service, req.Environment, req.Version, req.Baseline, startKey, req.Window, custom, mayAct))
	id := hex.EncodeToString(sum[:8])

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return st, false, errClosed
	}
	j, ok := h.jobs[id]
	if !ok {
		if h.running.Load() >= maxRunning || (len(h.jobs) >= maxJobs && !h.evictOldestFinalLocked()) {
			h.mu.Unlock()
			return st, false, errTooMany
		}
		j = &job{id: id, req: req, created: now, principal: by.Name, mayAct: mayAct, stage: verdict.StageVerify,
			expires: later(req.Start, now).Add(req.Window + expiryGrace)}
		if dep != nil {
			j.deploymentID = dep.ID
		}
		h.jobs[id] = j
		h.running.Add(1)
	}
	h.mu.Unlock()
	if !ok {
		h.logger.InfoContext(ctx, "Verification started", "id", id, "service", req.Service, "environment", req.Environment,
			"version", req.Version, "baseline", req.Baseline, "start", req.Start, "window", req.Window, "principal", by.Name,
			"request_signals", len(r.Signals))
	}
	err = h.advance(j)
	return j.status(), !ok, err
}

// previousVersion is the version of the service's latest recorded
// deployment before dep (before now without one) other than version: the
// version a deployment recorded without previousVersion replaced.
func (h *Hook) previousVersion(service, env, version string, dep *Deployment) string {
	for _, d := range h.store.List(service, env, 50) {
		if d.Version == version || (dep != nil && !d.StartedAt.Before(dep.StartedAt)) {
			continue
		}
		return d.Version
	}
	return ""
}

// checkRequestSignals refuses the request-supplied signals that could
// force a rollback by themselves — critical ones, alert ones, absolute
// bounds — unless the caller has the deploy scope and the configuration
// allows them.
func (h *Hook) checkRequestSignals(by auth.Principal, signals []verdict.Signal) error {
	for i, s := range signals {
		var what []string
		if s.Critical {
			what = append(what, "critical: true")
		}
		if s.Kind == verdict.KindAlert {
			what = append(what, "kind: alert")
		}
		if s.Max != nil {
			what = append(what, "max")
		}
		if s.Min != nil {
			what = append(what, "min")
		}
		if len(what) == 0 {
			continue
		}
		if !by.Has(auth.ScopeDeploy) {
			return &RequestError{Code: 403, Err: fmt.Errorf("signals[%d] (%s): %s in a verify request needs the deploy scope", i, s.Name, strings.Join(what, ", "))}
		}
		if !h.cfg.AllowRequestSignals {
			return badRequest(fmt.Errorf("signals[%d] (%s): a verify request may not bring %s: critical signals and absolute bounds come from the server's deploy.signals and catalog (deploy.allow_request_signals is false)",
				i, s.Name, strings.Join(what, ", ")))
		}
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// evictOldestFinalLocked forgets the oldest final verification to make room;
// it reports whether there was one. The caller holds h.mu.
func (h *Hook) evictOldestFinalLocked() bool {
	var oldest *job
	for _, j := range h.jobs {
		j.mu.Lock()
		final := j.final
		j.mu.Unlock()
		if final && (oldest == nil || j.created.Before(oldest.created)) {
			oldest = j
		}
	}
	if oldest == nil {
		return false
	}
	delete(h.jobs, oldest.id)
	return true
}

func (h *Hook) getJob(id string) (*job, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	j, ok := h.jobs[id]
	return j, ok
}

// Get returns the status of a verification, advancing it when it has no
// final verdict; found is false for an unknown (or forgotten) ID.
func (h *Hook) Get(id string) (st VerifyStatus, found bool, err error) {
	j, ok := h.getJob(id)
	if !ok {
		return st, false, nil
	}
	err = h.advance(j)
	return j.status(), true, err
}

// advance evaluates a job unless it has a final verdict, another
// evaluation of it is in flight, or it was evaluated less than half a step
// ago (its samples are a step apart: evaluating more often adds nothing, and
// polls cannot make it run more queries). It returns the evaluation's error.
func (h *Hook) advance(j *job) error {
	now := h.now()
	j.mu.Lock()
	if j.final || j.busy || (!j.evaluated.IsZero() && now.Sub(j.evaluated) < time.Duration(h.cfg.Step)/2) {
		j.mu.Unlock()
		return nil
	}
	j.busy = true
	j.mu.Unlock()

	ctx, cancel := context.WithTimeout(h.ctx, evaluationTimeout)
	t0 := time.Now()
	v, err := h.engine.Evaluate(ctx, j.req, now)
	cancel()
	h.evalDur.Observe(time.Since(t0).Seconds())

	j.mu.Lock()
	j.busy, j.evaluated = false, now
	switch {
	case err != nil && h.ctx.Err() != nil:
		// Shutting down: not the verification's fault.
		j.mu.Unlock()
		return err
	case err != nil:
		j.errs++
		j.lastErr = err.Error()
		if j.errs < h.cfg.MaxEvaluationErrors {
			j.mu.Unlock()
			return err
		}
		v = j.errorVerdictLocked(now, fmt.Sprintf("%d evaluations in a row failed (deploy.max_evaluation_errors), the last: %v", j.errs, err))
	default:
		j.errs, j.lastErr = 0, ""
	}
	h.stamp(j, &v)
	j.latest = &v
	j.final = v.Final
	j.mu.Unlock()
	h.showVerdict(j, v)
	if v.Final {
		h.conclude(j, v)
	}
	return err
}

// stamp gives a job's verdict its identity: the job's ID and deployment,
// its stage, and the service's rollback mode.
func (h *Hook) stamp(j *job, v *verdict.Verdict) {
	v.ID, v.DeploymentID, v.Stage = j.id, j.deploymentID, j.stage
	v.Mode = h.mode(v.Service, v.Environment)
	if v.Final && v.Decision == verdict.Rollback && v.Mode == catalog.ModeShadow && !strings.Contains(v.Summary, shadowNote) {
		v.Summary += " " + shadowNote
	}
}

// shadowNote ends the summary of a rollback verdict Vigil does not act on.
const shadowNote = "Shadow mode: recorded, not acted on."

// mode is a service's rollback mode: its catalog entry's, shadow outside
// the catalog (Vigil never acts on those).
func (h *Hook) mode(service, env string) string {
	if h.catalog != nil {
		if svc, ok := h.catalog.Service(service, env); ok {
			return svc.Rollback.Mode
		}
	}
	return catalog.ModeShadow
}

// showVerdict writes a verdict to the series: a verification's, and the
// rollback verdict of a watch (a regression after the promotion replaces
// the promotion); a watch's running and promote verdicts leave the
// verification's promotion shown.
func (h *Hook) showVerdict(j *job, v verdict.Verdict) {
	if j.stage == verdict.StageWatch && v.Decision != verdict.Rollback {
		return
	}
	h.series.setVerdict(v)
}

// errorVerdictLocked is the final verdict of a job that cannot be
// evaluated: the last verdict's evidence, decision error. The caller holds j.mu.
func (j *job) errorVerdictLocked(now time.Time, reason string) verdict.Verdict {
	v := verdict.Verdict{Service: j.req.Service, Environment: j.req.Environment, Version: j.req.Version, Baseline: j.req.Baseline,
		Start: j.req.Start, WindowSeconds: j.req.Window.Seconds()}
	if j.latest != nil {
		v = *j.latest
	}
	v.ID, v.EvaluatedAt, v.DeploymentID, v.Stage = j.id, now, j.deploymentID, j.stage
	v.Judgement = verdict.Judgement{Decision: verdict.Error, Final: true, Reason: reason, Signals: v.Signals}
	verdict.Explain(&v)
	return v
}

// conclude records a final verdict and acts on it (or records what it
// would have done), and starts the watch after a promotion; it runs once
// per job, with no lock held.
func (h *Hook) conclude(j *job, v verdict.Verdict) {
	h.running.Add(-1)
	if v.Mode == "" {
		v.Mode = h.mode(v.Service, v.Environment)
	}
	h.verdicts.WithLabelValues(string(v.Decision), v.Mode).Inc()
	h.logger.Info("Verdict reached", "id", v.ID, "service", v.Service, "version", v.Version, "baseline", v.Baseline, "stage", v.Stage, "mode", v.Mode,
		"decision", v.Decision, "score", v.Score, "reason", v.Reason, "summary", v.Summary, "traffic_seconds", v.TrafficSeconds, "principal", j.principal)
	if err := h.store.AddVerdict(v); err != nil {
		h.logger.Error("Recording the verdict failed", "id", v.ID, "err", err)
	}
	switch {
	case v.Decision == verdict.Rollback:
		h.onRollback(j, v)
	case v.Decision == verdict.Promote && j.stage == verdict.StageVerify:
		h.startWatch(j, v)
	}
}

// startWatch starts the watch that follows a promotion (deploy.watch).
func (h *Hook) startWatch(parent *job, v verdict.Verdict) {
	if h.cfg.Watch <= 0 {
		return
	}
	req := parent.req
	req.Watch = &verdict.Watch{From: v.EvaluatedAt, Duration: time.Duration(h.cfg.Watch)}
	if req.Watch.From.Before(req.Start) {
		req.Watch.From = req.Start
	}
	now := h.now()
	w := &job{id: parent.id + "-watch", req: req, created: now, principal: parent.principal, mayAct: parent.mayAct,
		deploymentID: parent.deploymentID, stage: verdict.StageWatch, expires: req.Watch.From.Add(req.Watch.Duration + expiryGrace)}
	h.mu.Lock()
	if h.closed || h.running.Load() >= maxRunning || h.jobs[w.id] != nil {
		h.mu.Unlock()
		h.logger.Warn("Not watching the promoted version: shutting down or too many verifications running", "service", v.Service, "version", v.Version)
		return
	}
	h.jobs[w.id] = w
	h.running.Add(1)
	h.mu.Unlock()
	parent.mu.Lock()
	parent.watch = w
	parent.mu.Unlock()
	h.logger.Info("Watching the promoted version", "id", w.id, "service", v.Service, "version", v.Version, "baseline", v.Baseline,
		"until", req.Watch.From.Add(req.Watch.Duration))
}

// onRollback acts on a rollback verdict where the catalog says so —
// enforce mode, and for a regression found by the watch after a promotion
// rollback.after_promotion — and requests are authenticated; elsewhere it
// records with the deployment what it would have done (wouldAct).
func (h *Hook) onRollback(j *job, v verdict.Verdict) {
	var svc catalog.Service
	inCatalog := false
	if h.catalog != nil {
		svc, inCatalog = h.catalog.Service(v.Service, v.Environment)
	}
	var why string
	switch {
	case !inCatalog:
		why = "the service is not in the catalog: Vigil only reports"
	case !svc.Rollback.Enforced():
		why = "shadow mode (rollback.mode: shadow): nothing was called"
	case j.stage == verdict.StageWatch && !svc.Rollback.AfterPromotion:
		why = "a regression after the promotion, and rollback.after_promotion is off: nothing was called"
	case !h.act:
		h.logger.Warn("Automatic rollback is configured but authentication is off (auth.tokens): not acting", "service", v.Service, "version", v.Version)
		why = "authentication is off (auth.tokens): Vigil acts only when requests are authenticated"
	}
	if why != "" {
		h.background(v, func() { h.wouldAct(j, svc, v, why) })
		return
	}
	if !j.mayAct {
		h.refuse(h.applicable(svc), j.deploymentID, v, j.principal, RefusedRequestSignals,
			"not acting on a verdict that relies on signals the verify request brought (that needs deploy.allow_request_signals and a caller with the deploy scope)")
		return
	}
	h.background(v, func() { h.rollback(h.ctx, svc, j.deploymentID, v, j.principal) })
}

// background runs f in its own goroutine, which Close waits for, unless
// the hook is shutting down.
func (h *Hook) background(v verdict.Verdict, f func()) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.logger.Warn("Shutting down: not acting on the verdict", "service", v.Service, "version", v.Version, "verdict", v.ID)
		return
	}
	h.acting.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.acting.Done()
		f()
	}()
}

// pendingJobs are the jobs without a final verdict.
func (h *Hook) pendingJobs() []*job {
	var out []*job
	for _, j := range h.allJobs() {
		j.mu.Lock()
		final := j.final
		j.mu.Unlock()
		if !final {
			out = append(out, j)
		}
	}
	return out
}

// allJobs are the jobs, oldest first.
func (h *Hook) allJobs() []*job {
	h.mu.Lock()
	out := make([]*job, 0, len(h.jobs))
	for _, j := range h.jobs {
		out = append(out, j)
	}
	h.mu.Unlock()
	slices.SortFunc(out, func(a, b *job) int { return a.created.Compare(b.created) })
	return out
}

// advanceAll evaluates the pending jobs, a few at a time.
func (h *Hook) advanceAll() {
	sem := make(chan struct{}, evalWorkers)
	var wg sync.WaitGroup
	for _, j := range h.pendingJobs() {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := h.advance(j); err != nil {
				h.logger.Warn("Verification failed", "id", j.id, "service", j.req.Service, "version", j.req.Version, "err", err)
			}
		})
	}
	wg.Wait()
}

// expireJobs ends the jobs that outlived their window with an error verdict
// and forgets final jobs after a day (their verdicts stay in the store).
func (h *Hook) expireJobs() {
	now := h.now()
	var forget []string
	for _, j := range h.allJobs() {
		j.mu.Lock()
		if j.final {
			if now.Sub(j.created) > keepFinal {
				forget = append(forget, j.id)
			}
			j.mu.Unlock()
			continue
		}
		if j.busy || !now.After(j.expires) {
			j.mu.Unlock()
			continue
		}
		reason := fmt.Sprintf("no final verdict by %s, its window and a grace of %s after its start", j.expires.UTC().Format(time.RFC3339), model.Duration(expiryGrace))
		if j.lastErr != "" {
			reason += "; the last evaluation failed: " + j.lastErr
		}
		v := j.errorVerdictLocked(now, reason)
		v.Mode = h.mode(v.Service, v.Environment)
		j.latest, j.final = &v, true
		j.mu.Unlock()
		h.logger.Warn("Verification expired", "id", j.id, "service", j.req.Service, "version", j.req.Version)
		h.showVerdict(j, v)
		h.conclude(j, v)
	}
	if len(forget) > 0 {
		h.mu.Lock()
		for _, id := range forget {
			delete(h.jobs, id)
		}
		h.mu.Unlock()
	}
}

// Verdicts lists the latest verdicts of service: running verifications
// first (newest first), then final ones, newest first.
func (h *Hook) Verdicts(service string, limit int) []verdict.Verdict {
	var out []verdict.Verdict
	jobs := h.allJobs()
	for i := len(jobs) - 1; i >= 0; i-- {
		j := jobs[i]
		j.mu.Lock()
		if !j.final && j.latest != nil && (service == "" || j.req.Service == service) {
			out = append(out, *j.latest)
		}
		j.mu.Unlock()
	}
	out = append(out, h.store.Verdicts(service, limit)...)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// Verdict returns the verdict with the given ID: the latest of a running
// verification, or a final one.
func (h *Hook) Verdict(id string) (verdict.Verdict, bool) {
	if j, ok := h.getJob(id); ok {
		j.mu.Lock()
		latest := j.latest
		j.mu.Unlock()
		if latest != nil {
			return *latest, true
		}
	}
	return h.store.Verdict(id)
}

// Deployments lists the recorded deployments, newest first, of service and
// environment when given.
func (h *Hook) Deployments(service, environment string, limit int) []Deployment {
	return h.store.List(service, environment, limit)
}

// applicable are the actors the service's catalog entry configures.
func (h *Hook) applicable(svc catalog.Service) []Actor {
	var out []Actor
	for _, a := range h.actors {
		if a.Applies(svc) {
			out = append(out, a)
		}
	}
	return out
}

// rollback runs every applicable actor and records what it did, unless the
// rate limits refuse it (at most one rollback per deployment, and
// deploy.rollback_cooldown between two of a service); by is who started it.
func (h *Hook) rollback(ctx context.Context, svc catalog.Service, deploymentID string, v verdict.Verdict, by string) []ActionRecord {
	d, _ := h.store.Get(deploymentID)
	if d.ID == "" {
		d = Deployment{Service: v.Service, Environment: v.Environment, Version: v.Version, PreviousVersion: v.Baseline}
	}
	actors := h.applicable(svc)
	if len(actors) == 0 {
		return nil
	}
	if why, msg := h.limiter.reserve(d, h.now()); why != "" {
		return h.refuse(actors, deploymentID, v, by, why, msg)
	}
	var recs []ActionRecord
	done := false
	for _, a := range actors {
		actx, cancel := context.WithTimeout(ctx, actionTimeout)
		target, err := a.Rollback(actx, svc, d, v)
		cancel()
		rec := ActionRecord{At: h.now().UTC(), Kind: a.Kind(), Target: target, Verdict: v.ID, OK: err == nil, Principal: by}
		result := "success"
		switch {
		case Refused(err):
			// The target no longer runs the condemned version: nothing changed.
			rec.Message, rec.Refused = "refused: "+err.Error(), RefusedTargetVersion
			result = "refused"
			h.logger.Warn("Rollback action refused", "kind", a.Kind(), "target", target, "service", v.Service, "version", v.Version, "principal", by, "reason", err)
		case err != nil:
			rec.Message = err.Error()
			result = "error"
			h.logger.Error("Rollback action failed", "kind", a.Kind(), "target", target, "service", v.Service, "version", v.Version, "principal", by, "err", err)
		default:
			done = true
			rec.Message = fmt.Sprintf("rolled back %s from %s", v.Service, v.Version)
			h.logger.Warn("Rolled back", "kind", a.Kind(), "target", target, "service", v.Service, "version", v.Version, "verdict", v.ID, "principal", by)
		}
		h.actions.WithLabelValues(a.Kind(), result).Inc()
		if deploymentID != "" {
			if err := h.store.AddAction(deploymentID, rec); err != nil {
				h.logger.Error("Recording the rollback action failed", "err", err)
			}
		}
		recs = append(recs, rec)
	}
	h.limiter.settle(d, done, h.now())
	return recs
}

// refuse records (and logs) a rollback the actors did not perform.
func (h *Hook) refuse(actors []Actor, deploymentID string, v verdict.Verdict, by string, why Refusal, msg string) []ActionRecord {
	var recs []ActionRecord
	for _, a := range actors {
		rec := ActionRecord{At: h.now().UTC(), Kind: a.Kind(), Verdict: v.ID, Message: msg, Principal: by, Refused: why}
		h.logger.Warn("Rollback refused", "kind", a.Kind(), "service", v.Service, "environment", v.Environment, "version", v.Version,
			"verdict", v.ID, "principal", by, "refused", why, "reason", msg)
		h.actions.WithLabelValues(a.Kind(), "refused").Inc()
		if deploymentID != "" {
			if err := h.store.AddAction(deploymentID, rec); err != nil {
				h.logger.Error("Recording the refused rollback failed", "err", err)
			}
		}
		recs = append(recs, rec)
	}
	return recs
}

func parseDuration(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	d, err := model.ParseDuration(s)
	return time.Duration(d), err
}
