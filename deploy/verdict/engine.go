package verdict

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Point is one value of a range query's result at a time (Unix ms).
type Point struct {
	T int64
	V float64
}

// Querier runs a PromQL range query and returns the points of its result
// (all series pooled, in time order per series; signal queries return one
// series).
type Querier interface {
	QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]Point, error)
}

// Values are the values of points, in order.
func Values(ps []Point) []float64 {
	out := make([]float64, len(ps))
	for i, p := range ps {
		out[i] = p.V
	}
	return out
}

// LogLine is an error log line quoted as evidence.
type LogLine struct {
	Body    string    `json:"body"`
	Count   int       `json:"count"`
	New     bool      `json:"new"` // not seen in the baseline's recent errors
	TraceID string    `json:"traceID,omitempty"`
	Last    time.Time `json:"last"`
}

// TraceRef is an example error trace of the version under test.
type TraceRef struct {
	TraceID string    `json:"traceID"`
	Span    string    `json:"span"`
	Message string    `json:"message,omitempty"`
	At      time.Time `json:"at"`
}

// Evidence reads the collector's recent error records of a service version.
type Evidence interface {
	ErrorLogs(service, version string, since time.Time, limit int) []LogLine
	ErrorTraces(service, version string, since time.Time, limit int) []TraceRef
}

// Request is what to verify.
type Request struct {
	Service     string `json:"service"`
	Environment string `json:"environment,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
	Version     string `json:"version"`
	// Baseline is the version to compare with. When it has no traffic during
	// the analysis (a rolling update replaced it), the comparison is with the
	// baseline before Start.
	Baseline string `json:"baseline"`
	// FirstDeploy: the service has no previous version (Baseline is empty);
	// the version is judged against its signals' absolute bounds (the
	// catalog's SLOs) and alerts alone.
	FirstDeploy bool `json:"firstDeploy,omitempty"`
	// Matchers are extra label matchers (catalog's matchers), without braces.
	Matchers string `json:"matchers,omitempty"`
	// Start is when the new version started taking traffic.
	Start time.Time `json:"start"`
	// Window is the most traffic time the analysis takes before a final decision.
	Window time.Duration `json:"window"`
	// Signals are the signals judged (DefaultSignals when empty).
	Signals []Signal `json:"signals,omitempty"`
	// Watch, when set, makes this the watch after a promotion: see Watch.
	Watch *Watch `json:"watch,omitempty"`
}

// Watch is the analysis that goes on after a promotion: from From for
// Duration, at every step the last Window of the new version's traffic is
// compared with the previous version's history before the deploy
// (baselineMode "before": [Start − Window, Start]). A regression found ends
// it with a rollback verdict; otherwise it ends at From + Duration with
// promote (or inconclusive, without data). Alpha is shared among the
// watch's windows (alpha / ⌈Duration / Window⌉), as the looks of a long
// watch are many more than those of one window.
type Watch struct {
	From     time.Time     `json:"from"`
	Duration time.Duration `json:"duration"`
}

// Validate names the first problem.
func (r Request) Validate() error {
	switch {
	case r.Service == "":
		return errors.New("service is required")
	case r.Version == "":
		return errors.New("version is required")
	case r.Baseline == "" && !r.FirstDeploy:
		return errors.New("baseline is required (the previous version)")
	case r.Baseline != "" && r.FirstDeploy:
		return fmt.Errorf("baseline %q given for a first deploy", r.Baseline)
	case r.Baseline == r.Version:
		return fmt.Errorf("baseline %q is the version under test", r.Baseline)
	case r.Start.IsZero():
		return errors.New("start is required")
	case r.Window <= 0:
		return errors.New("window must be positive")
	case r.Watch != nil && (r.Watch.Duration <= 0 || r.Watch.From.Before(r.Start)):
		return errors.New("watch: a positive duration from a time after the start is required")
	}
	for _, s := range r.Signals {
		if err := s.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Baseline modes.
const (
	// ModeConcurrent: baseline pods run alongside the canary.
	ModeConcurrent = "concurrent"
	// ModeBefore: the baseline before the deploy (a rolling update replaced it).
	ModeBefore = "before"
	// ModeNone: no previous version (a first deploy): absolute bounds only.
	ModeNone = "none"
)

// Stages of a verdict.
const (
	// StageVerify is the verification of a new version.
	StageVerify = "verify"
	// StageWatch is the watch after its promotion.
	StageWatch = "watch"
)

// Verdict is the outcome of one analysis with its evidence.
type Verdict struct {
	ID          string `json:"id"`
	Service     string `json:"service"`
	Environment string `json:"environment,omitempty"`
	Version     string `json:"version"`
	Baseline    string `json:"baseline"`
	// DeploymentID is the recorded deployment verified, when there is one.
	DeploymentID string `json:"deploymentId,omitempty"`
	// Stage is StageVerify or StageWatch (the watch after a promotion).
	Stage string `json:"stage,omitempty"`
	// Mode is the service's rollback mode when the verdict was reached:
	// "enforce" (a rollback verdict is acted on) or "shadow" (recorded and
	// counted, never acted on).
	Mode string `json:"mode,omitempty"`
	// BaselineMode is ModeConcurrent (baseline pods alongside the canary),
	// ModeBefore (the baseline before the deploy) or ModeNone (a first
	// deploy, judged against absolute bounds alone).
	BaselineMode string    `json:"baselineMode"`
	Start        time.Time `json:"start"`
	EvaluatedAt  time.Time `json:"evaluatedAt"`
	// TrafficSeconds is how much of the canary's traffic time was analysed
	// when the verdict was reached (of the watch: since the promotion).
	TrafficSeconds float64 `json:"trafficSeconds"`
	WindowSeconds  float64 `json:"windowSeconds"`
	// Summary is one paragraph of plain English: the decision, after how
	// much traffic, and the signal that decided it with its numbers.
	Summary string `json:"summary"`
	Judgement
	ErrorLogs   []LogLine  `json:"errorLogs,omitempty"`
	ErrorTraces []TraceRef `json:"errorTraces,omitempty"`
}

// Config configures the engine.
type Config struct {
	// Step is the resolution of the samples (default 15s, the span
	// metrics' flush interval).
	Step time.Duration
	// RateWindow is what $rate stands for in custom signals (default 1m).
	RateWindow time.Duration
	Policy     Policy
	// LinkBase is the external URL of Vigil, for the PromQL links in evidence.
	LinkBase string
	// SeriesLabels are the labels of the series Vigil derives: a request's
	// catalog matchers on other labels are left out of their selectors.
	SeriesLabels SeriesLabels
}

// Engine evaluates verdicts.
type Engine struct {
	cfg Config
	q   Querier
	ev  Evidence
}

// New builds an engine. ev may be nil (no log or trace evidence).
func New(cfg Config, q Querier, ev Evidence) (*Engine, error) {
	if cfg.Step <= 0 {
		cfg.Step = 15 * time.Second
	}
	if cfg.RateWindow <= 0 {
		cfg.RateWindow = time.Minute
	}
	if cfg.Policy == (Policy{}) {
		cfg.Policy = DefaultPolicy()
	}
	if err := cfg.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("verdict policy: %w", err)
	}
	if q == nil {
		return nil, errors.New("verdict: a querier is required")
	}
	return &Engine{cfg: cfg, q: q, ev: ev}, nil
}

// maxHistory bounds the steps a live evaluation judges and keeps in each
// signal's History: every step of a window of up to maxHistory steps (the
// default 10m/15s has 40), evenly spaced steps beyond.
const maxHistory = 250

// Evaluate analyses the traffic from req.Start up to now (at most
// req.Window of it) and decides. It judges the data as a verification
// polled at every step would have: at each step boundary (evenly spaced
// ones in a window of more than 250 steps) until a judgement is final, and
// keeps each signal's judged values per step in its History.
func (e *Engine) Evaluate(ctx context.Context, req Request, now time.Time) (Verdict, error) {
	return e.run(ctx, req, now, false)
}

// Replay judges a past deployment as it would have been judged live, at
// every step boundary from its start until the first final judgement (or
// until the window's end, or until, whichever is first): the same code as
// Evaluate, with each signal's range fetched once. EvaluatedAt is when the
// verdict would have been reached.
func (e *Engine) Replay(ctx context.Context, req Request, until time.Time) (Verdict, error) {
	return e.run(ctx, req, until, true)
}

// fetched are a verification's signal data, fetched once.
type fetched struct {
	signals []Signal // with defaults
	// per signal: canary and baseline points (ratio signals: the bad
	// events) and the totals of a ratio signal.
	canary, baseline, canaryTotal, baselineTotal [][]Point
	// per signal with a Presence query: its points on each side.
	canaryPresent, baselinePresent [][]Point
	traffic                        int // the signal that tells the baseline's traffic (-1: none)
}

// span is what one run analyses.
type span struct {
	origin     time.Time // the traffic analysed begins here (the start, or the promotion of a watch)
	limit      time.Time // and ends here at the latest
	cFrom      time.Time // the first canary sample
	bFrom, bTo time.Time // the baseline's samples
	slide      time.Duration
	policy     Policy
	window     float64 // seconds: Progress.Window
}

func (e *Engine) span(req Request) span {
	step := e.cfg.Step
	s := span{origin: req.Start, limit: req.Start.Add(req.Window), policy: e.cfg.Policy, window: req.Window.Seconds()}
	s.bFrom = req.Start.Add(-req.Window)
	if w := req.Watch; w != nil {
		s.origin, s.limit, s.slide = w.From, w.From.Add(w.Duration), req.Window
		s.bTo = req.Start
		looks := math.Ceil(w.Duration.Seconds() / req.Window.Seconds())
		s.policy.Alpha /= math.Max(looks, 1)
	}
	// The first canary sample is one step after the start, so that every
	// sample covers the new version only.
	s.cFrom = s.origin.Add(step).Truncate(time.Second)
	return s
}

func (e *Engine) run(ctx context.Context, req Request, now time.Time, everyStep bool) (Verdict, error) {
	if err := req.Validate(); err != nil {
		return Verdict{}, err
	}
	step := e.cfg.Step
	sp := e.span(req)
	end := now
	if end.After(sp.limit) {
		end = sp.limit
	}
	v := Verdict{
		Service: req.Service, Environment: req.Environment, Version: req.Version, Baseline: req.Baseline,
		Start: req.Start, EvaluatedAt: now, WindowSeconds: sp.limit.Sub(sp.origin).Seconds(), BaselineMode: ModeConcurrent, Stage: StageVerify,
	}
	switch {
	case req.FirstDeploy:
		v.BaselineMode = ModeNone
	case req.Watch != nil:
		v.BaselineMode, v.Stage = ModeBefore, StageWatch
	}
	v.TrafficSeconds = math.Max(0, end.Sub(sp.origin).Seconds())
	signals := req.Signals
	if len(signals) == 0 {
		signals = DefaultSignals()
	}
	cv, bv := e.vars(req, req.Version), e.vars(req, req.Baseline)
	if end.Before(sp.cFrom) {
		v.Judgement = Judgement{Decision: Inconclusive, Reason: "the new version has not taken traffic long enough to sample", NeedSecs: math.Ceil(sp.cFrom.Sub(end).Seconds()) + step.Seconds()}
		e.evidence(&v, req)
		explain(&v, signals)
		return v, nil
	}
	bTo := end
	if !sp.bTo.IsZero() {
		bTo = sp.bTo
	}
	f, err := e.fetch(ctx, req, signals, cv, bv, sp.cFrom, end, sp.bFrom, bTo)
	if err != nil {
		return v, err
	}
	// The steps judged: every step boundary up to the end, and the end.
	var grid []time.Time
	for t := sp.cFrom; t.Before(end); t = t.Add(step) {
		grid = append(grid, t)
	}
	grid = append(grid, end)
	if !everyStep && len(grid) > maxHistory {
		k := int(math.Ceil(float64(len(grid)) / maxHistory))
		thin := make([]time.Time, 0, maxHistory+1)
		for i := 0; i < len(grid)-1; i += k {
			thin = append(thin, grid[i])
		}
		grid = append(thin, end)
	}
	history := make([][]Step, len(f.signals))
	var j Judgement
	var at time.Time
	for _, t := range grid {
		var mode string
		j, mode = e.judgeAt(f, req, sp, t)
		at = t
		v.BaselineMode = mode
		for i, r := range j.Signals {
			history[i] = append(history[i], Step{At: t.UTC(), Canary: r.Canary, Baseline: r.Baseline, LogLR: r.LogLR, PValue: r.PValue, Status: r.Status})
		}
		if j.Final {
			break
		}
	}
	v.Judgement = j
	v.TrafficSeconds = math.Max(0, at.Sub(sp.origin).Seconds())
	if everyStep {
		v.EvaluatedAt = at
	}
	for i := range v.Judgement.Signals {
		sig := f.signals[i]
		r := &v.Judgement.Signals[i]
		r.History = history[i]
		q := sig.Query
		if sig.Kind == KindRatio {
			// Shown per step as the ratio it counts.
			q = fmt.Sprintf("(%s) / (%s > 0)", sig.Query, sig.Total)
		}
		r.Query = e.render(q, cv, req)
		if sig.Kind != KindAlert && !req.FirstDeploy {
			r.BaselineQuery = e.render(q, bv, req)
		}
		r.Link = e.link(r.Query, sp.cFrom, end)
	}
	e.evidence(&v, req)
	explain(&v, f.signals)
	return v, nil
}

func (e *Engine) evidence(v *Verdict, req Request) {
	if e.ev == nil {
		return
	}
	since := req.Start
	if req.Watch != nil {
		since = req.Watch.From
	}
	v.ErrorLogs = e.errorLogs(req, since)
	v.ErrorTraces = e.ev.ErrorTraces(req.Service, req.Version, since, 5)
}

// vars are the placeholders' values for a version of the request's service.
func (e *Engine) vars(req Request, version string) Vars {
	svc := fmt.Sprintf("service=%q", req.Service)
	if req.Environment != "" {
		svc += fmt.Sprintf(",environment=%q", req.Environment)
	}
	if req.Namespace != "" {
		svc += fmt.Sprintf(",namespace=%q", req.Namespace)
	}
	if req.Matchers != "" {
		svc += "," + req.Matchers
	}
	return Vars{Selector: svc + fmt.Sprintf(",version=%q", version), Service: svc, Step: model(e.cfg.Step), Rate: model(e.cfg.RateWindow), Version: version}
}

func (e *Engine) render(q string, v Vars, req Request) string {
	return e.cfg.SeriesLabels.scope(Render(q, v), catalogMatchers(req.Matchers))
}

// fetch runs every signal's queries once: the canary's from cFrom to end,
// the baseline's from bFrom to bTo.
func (e *Engine) fetch(ctx context.Context, req Request, signals []Signal, cv, bv Vars, cFrom, end, bFrom, bTo time.Time) (*fetched, error) {
	step := e.cfg.Step
	n := len(signals)
	f := &fetched{traffic: -1, canary: make([][]Point, n), baseline: make([][]Point, n), canaryTotal: make([][]Point, n), baselineTotal: make([][]Point, n),
		canaryPresent: make([][]Point, n), baselinePresent: make([][]Point, n)}
	withBaseline := !req.FirstDeploy && bTo.After(bFrom)
	for i, sig := range signals {
		sig = sig.withDefaults()
		f.signals = append(f.signals, sig)
		if f.traffic < 0 && sig.Kind == KindTraffic {
			f.traffic = i
		}
		var err error
		if f.canary[i], err = e.q.QueryRange(ctx, e.render(sig.Query, cv, req), cFrom, end, step); err != nil {
			return nil, fmt.Errorf("signal %s: %w", sig.Name, err)
		}
		if sig.Kind != KindAlert && withBaseline {
			if f.baseline[i], err = e.q.QueryRange(ctx, e.render(sig.Query, bv, req), bFrom, bTo, step); err != nil {
				return nil, fmt.Errorf("signal %s baseline: %w", sig.Name, err)
			}
		}
		if sig.Kind == KindRatio {
			if f.canaryTotal[i], err = e.q.QueryRange(ctx, e.render(sig.Total, cv, req), cFrom, end, step); err != nil {
				return nil, fmt.Errorf("signal %s total: %w", sig.Name, err)
			}
			if withBaseline {
				if f.baselineTotal[i], err = e.q.QueryRange(ctx, e.render(sig.Total, bv, req), bFrom, bTo, step); err != nil {
					return nil, fmt.Errorf("signal %s baseline total: %w", sig.Name, err)
				}
			}
		}
		if sig.Kind == KindRatio && sig.Presence != "" {
			if f.canaryPresent[i], err = e.q.QueryRange(ctx, e.render(sig.Presence, cv, req), cFrom, end, step); err != nil {
				return nil, fmt.Errorf("signal %s presence: %w", sig.Name, err)
			}
			if withBaseline {
				if f.baselinePresent[i], err = e.q.QueryRange(ctx, e.render(sig.Presence, bv, req), bFrom, bTo, step); err != nil {
					return nil, fmt.Errorf("signal %s baseline presence: %w", sig.Name, err)
				}
			}
		}
	}
	if f.traffic < 0 {
		for i, sig := range f.signals {
			if sig.Kind != KindAlert {
				f.traffic = i
				break
			}
		}
	}
	return f, nil
}

// judgeAt judges the data as a live evaluation at t would have: the canary's
// samples up to t (of a watch: the last window of them), the baseline's up
// to t (of a watch: before the start).
func (e *Engine) judgeAt(f *fetched, req Request, sp span, t time.Time) (Judgement, string) {
	tm := t.UnixMilli()
	cLo := sp.cFrom.UnixMilli()
	if sp.slide > 0 {
		cLo = max(cLo, t.Add(-sp.slide).UnixMilli()+1)
	}
	within := func(ps []Point, lo, hi int64) []float64 {
		var out []float64
		for _, p := range ps {
			if p.T >= lo && p.T <= hi {
				out = append(out, p.V)
			}
		}
		return out
	}
	mode := ModeConcurrent
	switch {
	case req.FirstDeploy:
		mode = ModeNone
	case req.Watch != nil:
		mode = ModeBefore
	case f.traffic < 0 || sum(within(f.baseline[f.traffic], sp.cFrom.UnixMilli(), tm)) == 0:
		mode = ModeBefore // a rolling update replaced it
	}
	samples := make([]Samples, len(f.signals))
	for i, sig := range f.signals {
		samples[i] = Samples{Signal: sig,
			Canary: within(f.canary[i], cLo, tm), Baseline: within(f.baseline[i], math.MinInt64, tm),
			CanaryTotal: within(f.canaryTotal[i], cLo, tm), BaselineTotal: within(f.baselineTotal[i], math.MinInt64, tm)}
		if sig.Presence != "" {
			samples[i].CanaryAbsent = len(within(f.canaryPresent[i], cLo, tm)) == 0
			samples[i].BaselineAbsent = len(within(f.baselinePresent[i], math.MinInt64, tm)) == 0
		}
	}
	elapsed := t.Sub(sp.origin).Seconds()
	prog := Progress{Elapsed: elapsed, Window: sp.window, Step: e.cfg.Step.Seconds(), Overlap: 1, BoundsOnly: req.FirstDeploy}
	if req.Watch == nil {
		return Judge(sp.policy, samples, prog), mode
	}
	// A watch: the sliding window is judged as a verification of one
	// window; only a rollback ends it before its end.
	prog.Elapsed = math.Min(elapsed, sp.window)
	j := Judge(sp.policy, samples, prog)
	over := !t.Before(sp.limit)
	switch {
	case j.Decision == Rollback:
		j.Final = true
		j.Reason = "regression after the promotion: " + j.Reason
	case over && j.Decision == Promote:
		j.Final = true
		j.Reason = fmt.Sprintf("no regression during the %s watch after the promotion (%s)", model(sp.limit.Sub(sp.origin)), j.Reason)
	case over:
		j.Final, j.Decision = true, Inconclusive
		j.Reason = fmt.Sprintf("watch over: %s", j.Reason)
	default:
		j.Final, j.Decision = false, Inconclusive
		j.NeedSecs, j.Needed = 0, nil
		j.Reason = fmt.Sprintf("watching: no regression so far (%s of %s)", fmtDuration(elapsed), fmtDuration(sp.limit.Sub(sp.origin).Seconds()))
	}
	return j, mode
}

// errorLogs groups the new version's recent error lines, most frequent
// first, and marks those the baseline did not log.
func (e *Engine) errorLogs(req Request, since time.Time) []LogLine {
	canary := e.ev.ErrorLogs(req.Service, req.Version, since, 500)
	old := map[string]bool{}
	for _, l := range e.ev.ErrorLogs(req.Service, req.Baseline, since.Add(-time.Hour), 500) {
		old[l.Body] = true
	}
	byBody := map[string]*LogLine{}
	var order []string
	for _, l := range canary {
		g, ok := byBody[l.Body]
		if !ok {
			c := l
			c.Count, c.New = 0, !old[l.Body]
			byBody[l.Body], g = &c, &c
			order = append(order, l.Body)
		}
		g.Count++
		if l.Last.After(g.Last) {
			g.Last = l.Last
		}
		if g.TraceID == "" {
			g.TraceID = l.TraceID
		}
	}
	out := make([]LogLine, 0, len(order))
	for _, b := range order {
		out = append(out, *byBody[b])
	}
	slices.SortStableFunc(out, func(a, b LogLine) int {
		if a.New != b.New {
			if a.New {
				return -1
			}
			return 1
		}
		return b.Count - a.Count
	})
	if len(out) > 5 {
		out = out[:5]
	}
	return out
}

func (e *Engine) link(q string, from, end time.Time) string {
	if e.cfg.LinkBase == "" {
		return ""
	}
	v := url.Values{"query": {q}, "start": {strconv.FormatInt(from.Unix(), 10)}, "end": {strconv.FormatInt(end.Unix(), 10)}, "step": {model(e.cfg.Step)}}
	return strings.TrimSuffix(e.cfg.LinkBase, "/") + "/api/v1/query_range?" + v.Encode()
}

// model renders a duration the way PromQL writes it (30s, 1m).
func model(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}
