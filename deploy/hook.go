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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/deploy/verdict"
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

	mu   sync.Mutex
	jobs map[string]*job

	events   *prometheus.CounterVec
	verdicts *prometheus.CounterVec
	actions  *prometheus.CounterVec
	evalDur  prometheus.Histogram
	running  prometheus.GaugeFunc
}

type job struct {
	ID           string
	Req          verdict.Request
	DeploymentID string
	Created      time.Time

	mu      sync.Mutex
	latest  *verdict.Verdict
	final   bool
	lastErr string
}

// maxRunning bounds the verifications without a final verdict.
const maxRunning = 1000

// errTooMany is returned when maxRunning verifications are running.
var errTooMany = errors.New("too many verifications running")

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
	h := &Hook{cfg: cfg, actors: opts.Actors, act: opts.AllowActions, logger: logger, now: opts.Now, jobs: map[string]*job{}}
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
	if h.store, err = OpenStore(filepath.Join(opts.Dir, "deployments"), logger); err != nil {
		return nil, err
	}
	h.series = newSeriesWriter(opts.Out, time.Duration(cfg.SeriesInterval))
	h.series.restore(h.store.Current(), h.store.Verdicts("", 0))
	h.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_deploy_events_total", Help: "Deployment events received, by format and result (recorded, updated, rejected).",
	}, []string{"format", "result"})
	h.verdicts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_verdicts_total", Help: "Final verdicts reached, by decision.",
	}, []string{"decision"})
	h.actions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_rollback_actions_total", Help: "Rollback actions performed, by kind and result (success, error, refused: the target no longer ran the condemned version).",
	}, []string{"kind", "result"})
	h.evalDur = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "vigil_verdict_evaluation_duration_seconds", Help: "Time to evaluate a verdict (all signal queries).",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
	})
	h.running = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "vigil_verifications_running", Help: "Verifications without a final verdict.",
	}, func() float64 { return float64(h.runningJobs()) })
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(h.events, h.verdicts, h.actions, h.evalDur, h.running)
	}
	return h, nil
}

// Store is the deployment store.
func (h *Hook) Store() *Store { return h.store }

// Close closes the store.
func (h *Hook) Close() error { return h.store.Close() }

// Run re-writes the series and advances running verifications (so that a
// verdict is reached, and acted on, even when nobody polls) until ctx ends.
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
		case <-evalT.C:
			for _, j := range h.pendingJobs() {
				if _, err := h.advance(ctx, j); err != nil {
					h.logger.Warn("Verification failed", "id", j.ID, "service", j.Req.Service, "version", j.Req.Version, "err", err)
				}
			}
			h.expireJobs()
		}
	}
}

func (h *Hook) writeSeries(ctx context.Context) {
	if err := h.series.write(ctx, h.store.Current(), h.now()); err != nil {
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

// requestError is a verify request that cannot be served as given (400).
type requestError struct{ error }

// StartVerification resolves the request against the recorded deployments
// and the catalog and returns the (possibly already running) job.
func (h *Hook) StartVerification(ctx context.Context, r VerifyRequest) (*job, bool, error) {
	if r.Service == "" {
		return nil, false, requestError{errors.New("service: missing")}
	}
	if r.Version == "" {
		return nil, false, requestError{errors.New("version: missing")}
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
		return nil, false, requestError{fmt.Errorf("baseline: missing (give one, or record a deployment of %s %s with previousVersion)", r.Service, r.Version)}
	}
	// Without a start (none given, no deployment recorded) the
	// verification starts now, and later identical requests join it: tools
	// such as Argo Rollouts' web provider POST the same body every interval.
	startKey := "now"
	switch {
	case r.Start != nil:
		req.Start = *r.Start
	case dep != nil:
		req.Start = dep.StartedAt
	default:
		req.Start = h.now()
	}
	if r.Start != nil || dep != nil {
		startKey = strconv.FormatInt(req.Start.UnixMilli(), 10)
	}
	if r.Window != "" {
		w, err := parseDuration(r.Window)
		if err != nil || w <= 0 {
			return nil, false, requestError{fmt.Errorf("window: %q is not a positive duration such as 5m", r.Window)}
		}
		req.Window = w
	}
	req.Signals = append(append(append(verdict.DefaultSignals(), sloSignals(svc, inCatalog)...), h.cfg.Signals...), r.Signals...)
	if err := req.Validate(); err != nil {
		return nil, false, requestError{err}
	}
	custom, _ := json.Marshal(r.Signals)
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\xff%s\xff%s\xff%s\xff%s\xff%d\xff%s", req.Service, req.Environment, req.Version, req.Baseline, startKey, req.Window, custom))
	id := hex.EncodeToString(sum[:8])
	running := 0
	if _, ok := h.getJob(id); !ok {
		running = h.runningJobs()
	}
	h.mu.Lock()
	j, ok := h.jobs[id]
	if !ok && running >= maxRunning {
		h.mu.Unlock()
		return nil, false, errTooMany
	}
	if !ok {
		j = &job{ID: id, Req: req, Created: h.now()}
		if dep != nil {
			j.DeploymentID = dep.ID
		}
		h.jobs[id] = j
	}
	h.mu.Unlock()
	if !ok {
		h.logger.Info("Verification started", "id", id, "service", req.Service, "environment", req.Environment,
			"version", req.Version, "baseline", req.Baseline, "start", req.Start, "window", req.Window)
	}
	if _, err := h.advance(ctx, j); err != nil {
		return j, !ok, err
	}
	return j, !ok, nil
}

// sloSignals turn a catalog service's SLOs into absolute bounds.
func sloSignals(svc catalog.Service, ok bool) []verdict.Signal {
	if !ok {
		return nil
	}
	var out []verdict.Signal
	def := map[string]verdict.Signal{}
	for _, s := range verdict.DefaultSignals() {
		def[s.Name] = s
	}
	if a := svc.SLOs.Availability; a != nil {
		// The error ratio, failing at once when it is significantly above
		// the error budget, and compared with the baseline for a regression
		// of the whole budget.
		budget := catalog.ErrorBudget(a.Objective)
		s := def["error_ratio"]
		s.Name, s.Max, s.Weight, s.Tolerance, s.Floor = "slo_availability", &budget, 1, 0, budget
		out = append(out, s)
	}
	if l := svc.SLOs.Latency; l != nil {
		th := time.Duration(l.Threshold).Seconds()
		q := strings.Replace(def["latency_p99"].Query, "histogram_quantile(0.99,", fmt.Sprintf("histogram_quantile(%g,", l.Objective/100), 1)
		out = append(out, verdict.Signal{Name: "slo_latency", Query: q, Max: &th, Weight: 1, Tolerance: 0.25, Floor: th / 10})
	}
	return out
}

func (h *Hook) getJob(id string) (*job, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	j, ok := h.jobs[id]
	return j, ok
}

// Get returns a job by ID, advancing it when it has no final verdict.
func (h *Hook) Get(ctx context.Context, id string) (*job, error) {
	j, ok := h.getJob(id)
	if !ok {
		return nil, nil
	}
	_, err := h.advance(ctx, j)
	return j, err
}

// advance evaluates a job unless it already has a final verdict.
func (h *Hook) advance(ctx context.Context, j *job) (verdict.Verdict, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.final {
		return *j.latest, nil
	}
	start := time.Now()
	v, err := h.engine.Evaluate(ctx, j.Req, h.now())
	h.evalDur.Observe(time.Since(start).Seconds())
	if err != nil {
		j.lastErr = err.Error()
		return v, err
	}
	j.lastErr = ""
	v.ID = j.ID
	j.latest = &v
	h.series.setVerdict(v)
	if !v.Final {
		return v, nil
	}
	j.final = true
	h.verdicts.WithLabelValues(string(v.Decision)).Inc()
	h.logger.Info("Verdict reached", "id", v.ID, "service", v.Service, "version", v.Version, "baseline", v.Baseline,
		"decision", v.Decision, "score", v.Score, "reason", v.Reason, "traffic_seconds", v.TrafficSeconds)
	if err := h.store.AddVerdict(v); err != nil {
		h.logger.Error("Recording the verdict failed", "id", v.ID, "err", err)
	}
	if v.Decision == verdict.Rollback {
		h.autoRollback(ctx, j, v)
	}
	return v, nil
}

func (h *Hook) pendingJobs() []*job {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*job
	for _, j := range h.jobs {
		j.mu.Lock()
		if !j.final {
			out = append(out, j)
		}
		j.mu.Unlock()
	}
	return out
}

func (h *Hook) runningJobs() int { return len(h.pendingJobs()) }

// expireJobs forgets final jobs after a day; their verdicts stay in the store.
func (h *Hook) expireJobs() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, j := range h.jobs {
		j.mu.Lock()
		old := j.final && h.now().Sub(j.Created) > 24*time.Hour
		j.mu.Unlock()
		if old {
			delete(h.jobs, id)
		}
	}
}

// Verdicts lists the latest verdicts of service: running verifications
// first, then final ones, newest first.
func (h *Hook) Verdicts(service string, limit int) []verdict.Verdict {
	var out []verdict.Verdict
	for _, j := range h.pendingJobs() {
		j.mu.Lock()
		if j.latest != nil && (service == "" || j.Req.Service == service) {
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

// autoRollback runs the service's rollback actions when the catalog says
// rollback is automatic and actions are allowed (requests are authenticated).
func (h *Hook) autoRollback(ctx context.Context, j *job, v verdict.Verdict) {
	if h.catalog == nil {
		return
	}
	svc, ok := h.catalog.Service(v.Service, v.Environment)
	if !ok || !svc.Rollback.Automatic {
		return
	}
	if !h.act {
		h.logger.Warn("Automatic rollback is configured but authentication is off (auth.tokens): not acting", "service", v.Service, "version", v.Version)
		return
	}
	h.rollback(ctx, svc, j.DeploymentID, v)
}

// rollback runs every applicable actor and records what it did.
func (h *Hook) rollback(ctx context.Context, svc catalog.Service, deploymentID string, v verdict.Verdict) []ActionRecord {
	d, _ := h.store.Get(deploymentID)
	if d.ID == "" {
		d = Deployment{Service: v.Service, Environment: v.Environment, Version: v.Version, PreviousVersion: v.Baseline}
	}
	var recs []ActionRecord
	for _, a := range h.actors {
		if !a.Applies(svc) {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		target, err := a.Rollback(actx, svc, d, v)
		cancel()
		rec := ActionRecord{At: h.now().UTC(), Kind: a.Kind(), Target: target, Verdict: v.ID, OK: err == nil}
		result := "success"
		switch {
		case Refused(err):
			// The target no longer runs the condemned version: nothing changed.
			rec.Message, rec.Refused = "refused: "+err.Error(), true
			result = "refused"
			h.logger.Warn("Rollback action refused", "kind", a.Kind(), "target", target, "service", v.Service, "version", v.Version, "reason", err)
		case err != nil:
			rec.Message = err.Error()
			result = "error"
			h.logger.Error("Rollback action failed", "kind", a.Kind(), "target", target, "service", v.Service, "version", v.Version, "err", err)
		default:
			rec.Message = fmt.Sprintf("rolled back %s from %s", v.Service, v.Version)
			h.logger.Warn("Rolled back", "kind", a.Kind(), "target", target, "service", v.Service, "version", v.Version, "verdict", v.ID)
		}
		h.actions.WithLabelValues(a.Kind(), result).Inc()
		if deploymentID != "" {
			if err := h.store.AddAction(deploymentID, rec); err != nil {
				h.logger.Error("Recording the rollback action failed", "err", err)
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
