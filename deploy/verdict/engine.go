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

// Querier runs a PromQL range query and returns the values of its result at
// each step (all series pooled; signal queries return one series).
type Querier interface {
	QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]float64, error)
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
	// Matchers are extra label matchers (catalog's matchers), without braces.
	Matchers string `json:"matchers,omitempty"`
	// Start is when the new version started taking traffic.
	Start time.Time `json:"start"`
	// Window is the most traffic time the analysis takes before a final decision.
	Window time.Duration `json:"window"`
	// Signals are the signals judged (DefaultSignals when empty).
	Signals []Signal `json:"signals,omitempty"`
}

// Validate names the first problem.
func (r Request) Validate() error {
	switch {
	case r.Service == "":
		return errors.New("service is required")
	case r.Version == "":
		return errors.New("version is required")
	case r.Baseline == "":
		return errors.New("baseline is required (the previous version)")
	case r.Baseline == r.Version:
		return fmt.Errorf("baseline %q is the version under test", r.Baseline)
	case r.Start.IsZero():
		return errors.New("start is required")
	case r.Window <= 0:
		return errors.New("window must be positive")
	}
	for _, s := range r.Signals {
		if err := s.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Verdict is the outcome of one analysis with its evidence.
type Verdict struct {
	ID          string `json:"id"`
	Service     string `json:"service"`
	Environment string `json:"environment,omitempty"`
	Version     string `json:"version"`
	Baseline    string `json:"baseline"`
	// BaselineMode is "concurrent" (baseline pods alongside the canary) or
	// "before" (the baseline before the deploy).
	BaselineMode string    `json:"baselineMode"`
	Start        time.Time `json:"start"`
	EvaluatedAt  time.Time `json:"evaluatedAt"`
	// TrafficSeconds is how much of the canary's traffic time was analysed.
	TrafficSeconds float64 `json:"trafficSeconds"`
	WindowSeconds  float64 `json:"windowSeconds"`
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

// Evaluate analyses the traffic from req.Start up to now (at most
// req.Window of it) and decides.
func (e *Engine) Evaluate(ctx context.Context, req Request, now time.Time) (Verdict, error) {
	if err := req.Validate(); err != nil {
		return Verdict{}, err
	}
	step := e.cfg.Step
	// The first canary sample is one step after the start, so that every
	// sample covers the new version only; samples stop at the window's end.
	from := req.Start.Add(step).Truncate(time.Second)
	end := now
	if lim := req.Start.Add(req.Window); end.After(lim) {
		end = lim
	}
	v := Verdict{
		Service: req.Service, Environment: req.Environment, Version: req.Version, Baseline: req.Baseline,
		Start: req.Start, EvaluatedAt: now, WindowSeconds: req.Window.Seconds(), BaselineMode: "concurrent",
	}
	elapsed := end.Sub(req.Start).Seconds()
	v.TrafficSeconds = math.Max(0, elapsed)
	signals := req.Signals
	if len(signals) == 0 {
		signals = DefaultSignals()
	}
	vars := func(version string) Vars {
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
		return Vars{Selector: svc + fmt.Sprintf(",version=%q", version), Service: svc, Step: model(e.cfg.Step), Rate: model(e.cfg.RateWindow)}
	}
	cv, bv := vars(req.Version), vars(req.Baseline)
	catalog := catalogMatchers(req.Matchers)
	render := func(q string, v Vars) string { return e.cfg.SeriesLabels.scope(Render(q, v), catalog) }
	var samples []Samples
	if !end.Before(from) {
		// Baseline: the baseline version from one window before the deploy
		// until now: its history and, in a canary, its pods alongside.
		bFrom, bEnd := req.Start.Add(-req.Window), end
		probe := render(signals[0].Query, bv)
		if sig := findTraffic(signals); sig != nil {
			probe = render(sig.Query, bv)
		}
		if got, err := e.q.QueryRange(ctx, probe, from, end, step); err != nil {
			return v, fmt.Errorf("baseline traffic: %w", err)
		} else if sum(got) == 0 {
			v.BaselineMode = "before" // a rolling update replaced it
		}
		for _, sig := range signals {
			sig = sig.withDefaults()
			cq := render(sig.Query, cv)
			s := Samples{Signal: sig}
			var err error
			if s.Canary, err = e.q.QueryRange(ctx, cq, from, end, step); err != nil {
				return v, fmt.Errorf("signal %s: %w", sig.Name, err)
			}
			if sig.Kind != KindAlert {
				bq := render(sig.Query, bv)
				if s.Baseline, err = e.q.QueryRange(ctx, bq, bFrom, bEnd, step); err != nil {
					return v, fmt.Errorf("signal %s baseline: %w", sig.Name, err)
				}
			}
			if sig.Kind == KindRatio {
				if s.CanaryTotal, err = e.q.QueryRange(ctx, render(sig.Total, cv), from, end, step); err != nil {
					return v, fmt.Errorf("signal %s total: %w", sig.Name, err)
				}
				if s.BaselineTotal, err = e.q.QueryRange(ctx, render(sig.Total, bv), bFrom, bEnd, step); err != nil {
					return v, fmt.Errorf("signal %s baseline total: %w", sig.Name, err)
				}
			}
			samples = append(samples, s)
		}
		v.Judgement = Judge(e.cfg.Policy, samples, Progress{
			Elapsed: elapsed, Window: req.Window.Seconds(), Step: step.Seconds(), Overlap: 1,
		})
		for i := range v.Judgement.Signals {
			sig := samples[i].Signal
			r := &v.Judgement.Signals[i]
			q := sig.Query
			if sig.Kind == KindRatio {
				// Shown per step as the ratio it counts.
				q = fmt.Sprintf("(%s) / (%s > 0)", sig.Query, sig.Total)
			}
			r.Query = render(q, cv)
			if sig.Kind != KindAlert {
				r.BaselineQuery = render(q, bv)
			}
			r.Link = e.link(r.Query, from, end)
		}
	} else {
		v.Judgement = Judgement{Decision: Inconclusive, Reason: "the new version has not taken traffic long enough to sample", NeedSecs: math.Ceil(from.Sub(end).Seconds()) + step.Seconds()}
	}
	if e.ev != nil {
		since := req.Start
		v.ErrorLogs = e.errorLogs(req, since)
		v.ErrorTraces = e.ev.ErrorTraces(req.Service, req.Version, since, 5)
	}
	return v, nil
}

func findTraffic(signals []Signal) *Signal {
	for i := range signals {
		if signals[i].Kind == KindTraffic {
			return &signals[i]
		}
	}
	return nil
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
