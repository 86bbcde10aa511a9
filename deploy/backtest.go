package deploy

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/model"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/yamlconf"
)

// A backtest replays recorded deployments through the verdict engine over
// the data already stored, as the verifications would have run live
// (verdict.Engine.Replay: a judgement at every step boundary until one is
// final, each signal's range fetched once), and compares each verdict with
// what actually happened next — the truth.

// Truth labels.
const (
	TruthGood    = "good"
	TruthBad     = "bad"
	TruthUnknown = "unknown"
)

// Truth sources: where a deployment's truth came from.
const (
	// TruthFromLabel: the user's labels file.
	TruthFromLabel = "label"
	// TruthFromRollback: the previous version was deployed again within
	// the rollback horizon: a human rollback.
	TruthFromRollback = "rollback"
	// TruthFromAlert: a critical alert fired for the service and version
	// within the horizon.
	TruthFromAlert = "alert"
	// TruthFromNothing: nothing happened: the deployment is taken as good.
	TruthFromNothing = "none"
)

// BacktestPolicy is one policy to replay the history with: the decision
// thresholds, the custom signals (deploy.signals) and the window.
type BacktestPolicy struct {
	Name    string           `json:"name" yaml:"-"`
	Window  model.Duration   `json:"window" yaml:"window"`
	Policy  verdict.Policy   `json:"policy" yaml:"policy"`
	Signals []verdict.Signal `json:"signals,omitempty" yaml:"signals"`
}

// Validate checks the policy, naming the key.
func (p BacktestPolicy) Validate() error {
	if p.Window <= 0 {
		return fmt.Errorf("window must be positive, got %s", p.Window)
	}
	if err := p.Policy.Validate(); err != nil {
		return fmt.Errorf("policy.%w", err)
	}
	for i, s := range p.Signals {
		if err := s.Validate(); err != nil {
			return fmt.Errorf("signals[%d]: %w", i, err)
		}
	}
	return nil
}

// maxPolicyBytes bounds a policy file or form value.
const maxPolicyBytes = 1 << 20

// ParseBacktestPolicy reads a policy file: YAML with deploy's policy,
// signals and window keys (`policy: {alpha: 0.01}`, `signals: [...]`,
// `window: 5m`); what it leaves out is taken from def. Unknown keys are
// refused with their line.
func ParseBacktestPolicy(name string, b []byte, def BacktestPolicy) (BacktestPolicy, error) {
	if len(b) > maxPolicyBytes {
		return BacktestPolicy{}, fmt.Errorf("policy %s: larger than %d bytes", name, maxPolicyBytes)
	}
	p := def
	p.Signals = nil
	if err := yamlconf.Decode(b, &p); err != nil {
		return BacktestPolicy{}, fmt.Errorf("policy %s: %w", name, err)
	}
	p.Name = name
	if err := p.Validate(); err != nil {
		return BacktestPolicy{}, fmt.Errorf("policy %s: %w", name, err)
	}
	return p, nil
}

// PolicyName names a policy after its file: "strict" for policies/strict.yml.
func PolicyName(path string) string {
	return strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
}

// TruthLabel is a user's word on a deployment: by ID, or by service,
// version and start.
type TruthLabel struct {
	ID      string
	Service string
	Version string
	Start   time.Time
	Label   string // good or bad
}

func (l TruthLabel) matches(d Deployment) bool {
	if l.ID != "" {
		return l.ID == d.ID
	}
	return l.Service == d.Service && l.Version == d.Version && (l.Start.IsZero() || l.Start.Equal(d.StartedAt))
}

// maxLabels bounds a labels file.
const maxLabels = 100000

// ParseTruthLabels reads a labels CSV: one deployment a line, either
// `id,label` or `service,version,start,label` (start RFC 3339, or empty
// for any start), label good or bad; a first line naming the columns
// (id,... or service,...) and blank lines are skipped.
func ParseTruthLabels(r io.Reader) ([]TruthLabel, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	var out []TruthLabel
	for line := 1; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("labels: %w", err)
		}
		if line == 1 && len(rec) > 0 && (strings.EqualFold(rec[0], "id") || strings.EqualFold(rec[0], "service")) {
			continue
		}
		if len(out) == maxLabels {
			return nil, fmt.Errorf("labels: more than %d", maxLabels)
		}
		var l TruthLabel
		switch len(rec) {
		case 2:
			l.ID, l.Label = strings.TrimSpace(rec[0]), rec[1]
		case 4:
			l.Service, l.Version, l.Label = strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1]), rec[3]
			if s := strings.TrimSpace(rec[2]); s != "" {
				if l.Start, err = time.Parse(time.RFC3339, s); err != nil {
					return nil, fmt.Errorf("labels line %d: start %q is not an RFC 3339 time", line, s)
				}
			}
		default:
			return nil, fmt.Errorf("labels line %d: %d fields, want id,label or service,version,start,label", line, len(rec))
		}
		switch l.Label = strings.ToLower(strings.TrimSpace(l.Label)); l.Label {
		case TruthGood, TruthBad:
		default:
			return nil, fmt.Errorf("labels line %d: label %q is not good or bad", line, l.Label)
		}
		if l.ID == "" && (l.Service == "" || l.Version == "") {
			return nil, fmt.Errorf("labels line %d: no deployment id, or no service and version", line)
		}
		out = append(out, l)
	}
}

// BacktestOptions say what to replay.
type BacktestOptions struct {
	// From and To bound the deployments' starts.
	From, To time.Time
	// Service and Environment select deployments (all when empty).
	Service, Environment string
	// RollbackWithin is the horizon of the truth: a deployment of the
	// previous version within it is a human rollback, a critical alert
	// within it a bad deployment (default 60m).
	RollbackWithin time.Duration
	// Labels are the user's own truth; they win over what is inferred.
	Labels []TruthLabel
	// Policies are replayed side by side (at least one).
	Policies []BacktestPolicy
	// Now is when the replay runs: data after it is not there yet.
	Now time.Time
	// Workers replay deployments at once (GOMAXPROCS when 0).
	Workers int
}

// Backtester replays deployments over a source of data.
type Backtester struct {
	// Querier runs the signal queries (the embedded engine over the TSDB,
	// or over a remote_read source).
	Querier verdict.Querier
	// Catalog gives the services' matchers, signals and SLOs (optional).
	Catalog *catalog.Catalog
	// Step and RateWindow are deploy.step and deploy.rate_window.
	Step, RateWindow time.Duration
	SeriesLabels     verdict.SeriesLabels
}

// BacktestResult is one policy's verdict on one deployment.
type BacktestResult struct {
	Policy   string           `json:"policy"`
	Decision verdict.Decision `json:"decision"`
	// Final is false when the data ends before a final verdict (the window
	// is not over yet).
	Final bool `json:"final"`
	// Seconds is the traffic time when the verdict was reached.
	Seconds float64  `json:"seconds"`
	Failing []string `json:"failingSignals,omitempty"`
	Summary string   `json:"summary"`
	// Error is why the deployment could not be replayed.
	Error string `json:"error,omitempty"`
}

// Truth is what actually happened after a deployment.
type Truth struct {
	Label  string `json:"label"`
	Source string `json:"source"`
	Detail string `json:"detail,omitempty"`
}

// BacktestDeployment is one deployment replayed.
type BacktestDeployment struct {
	ID          string           `json:"id"`
	Service     string           `json:"service"`
	Environment string           `json:"environment,omitempty"`
	Version     string           `json:"version"`
	Baseline    string           `json:"baseline,omitempty"`
	Start       time.Time        `json:"start"`
	Truth       Truth            `json:"truth"`
	Results     []BacktestResult `json:"results"`
}

// Scores are how a policy's verdicts compare with the truth.
type Scores struct {
	Deployments  int `json:"deployments"`
	Bad          int `json:"bad"`
	Good         int `json:"good"`
	Rollbacks    int `json:"rollbacks"`
	Promotions   int `json:"promotions"`
	Inconclusive int `json:"inconclusive"`
	Errors       int `json:"errors"`
	// TruePositives are rollbacks of bad deployments, FalsePositives of
	// good ones; Missed are bad deployments not rolled back.
	TruePositives  int `json:"truePositives"`
	FalsePositives int `json:"falsePositives"`
	Missed         int `json:"missed"`
	// Precision is the share of rollbacks that were of bad deployments,
	// Recall the share of bad deployments rolled back, FalseRollbackRate
	// the share of good deployments rolled back (nil: nothing to divide).
	Precision         *float64 `json:"precision"`
	Recall            *float64 `json:"recall"`
	FalseRollbackRate *float64 `json:"falseRollbackRate"`
	// Median and P95 time to decision (traffic seconds) of the final verdicts.
	MedianSeconds *float64 `json:"medianSeconds"`
	P95Seconds    *float64 `json:"p95Seconds"`
}

// PolicyScores are a policy's scores overall and per service.
type PolicyScores struct {
	Policy   string            `json:"policy"`
	Overall  Scores            `json:"overall"`
	Services map[string]Scores `json:"services"`
}

// BacktestReport is a backtest's outcome.
type BacktestReport struct {
	From                  time.Time            `json:"from"`
	To                    time.Time            `json:"to"`
	RollbackWithinSeconds float64              `json:"rollbackWithinSeconds"`
	Policies              []BacktestPolicy     `json:"policies"`
	Deployments           []BacktestDeployment `json:"deployments"`
	// Skipped are deployments that could not be replayed, with why.
	Skipped []SkippedDeployment `json:"skipped,omitempty"`
	Scores  []PolicyScores      `json:"scores"`
}

// SkippedDeployment is a deployment left out of a backtest.
type SkippedDeployment struct {
	ID      string `json:"id"`
	Service string `json:"service"`
	Version string `json:"version"`
	Reason  string `json:"reason"`
}

// Run replays the deployments of all (every recorded deployment: those
// after To are read for the truth) that opts selects.
func (b Backtester) Run(ctx context.Context, all []Deployment, opts BacktestOptions) (BacktestReport, error) {
	if len(opts.Policies) == 0 {
		return BacktestReport{}, errors.New("backtest: no policy")
	}
	if !opts.To.After(opts.From) {
		return BacktestReport{}, fmt.Errorf("backtest: to (%s) must be after from (%s)", opts.To.Format(time.RFC3339), opts.From.Format(time.RFC3339))
	}
	if opts.RollbackWithin <= 0 {
		opts.RollbackWithin = time.Hour
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	engines := make([]*verdict.Engine, len(opts.Policies))
	for i, p := range opts.Policies {
		if err := p.Validate(); err != nil {
			return BacktestReport{}, fmt.Errorf("backtest policy %s: %w", p.Name, err)
		}
		e, err := verdict.New(verdict.Config{Step: b.Step, RateWindow: b.RateWindow, Policy: p.Policy, SeriesLabels: b.SeriesLabels}, b.Querier, nil)
		if err != nil {
			return BacktestReport{}, fmt.Errorf("backtest policy %s: %w", p.Name, err)
		}
		engines[i] = e
	}
	// Oldest first, in a fixed order: the same history gives the same report.
	sorted := slices.Clone(all)
	slices.SortStableFunc(sorted, func(a, c Deployment) int {
		if n := a.StartedAt.Compare(c.StartedAt); n != 0 {
			return n
		}
		return strings.Compare(a.ID, c.ID)
	})
	rep := BacktestReport{From: opts.From.UTC(), To: opts.To.UTC(), RollbackWithinSeconds: opts.RollbackWithin.Seconds(), Policies: opts.Policies}
	type task struct {
		d   Deployment
		req verdict.Request
		at  int
	}
	var tasks []task
	for i, d := range sorted {
		if d.StartedAt.Before(opts.From) || !d.StartedAt.Before(opts.To) ||
			(opts.Service != "" && d.Service != opts.Service) || (opts.Environment != "" && d.Environment != opts.Environment) {
			continue
		}
		req, why := b.request(d, sorted[:i])
		if why != "" {
			rep.Skipped = append(rep.Skipped, SkippedDeployment{ID: d.ID, Service: d.Service, Version: d.Version, Reason: why})
			continue
		}
		tasks = append(tasks, task{d: d, req: req, at: len(rep.Deployments)})
		rep.Deployments = append(rep.Deployments, BacktestDeployment{ID: d.ID, Service: d.Service, Environment: d.Environment,
			Version: d.Version, Baseline: req.Baseline, Start: d.StartedAt.UTC(), Results: make([]BacktestResult, len(engines))})
	}
	var (
		wg   sync.WaitGroup
		next = make(chan task)
	)
	for range min(workers, max(len(tasks), 1)) {
		wg.Go(func() {
			for t := range next {
				bd := &rep.Deployments[t.at]
				bd.Truth = b.truth(ctx, t.d, t.req.Baseline, sorted, opts)
				for i, e := range engines {
					req := t.req
					p := opts.Policies[i]
					req.Window = time.Duration(p.Window)
					req.Signals = ServiceSignals(b.service(t.d), b.inCatalog(t.d), p.Signals)
					bd.Results[i] = replay(ctx, e, req, p.Name, opts.Now)
				}
			}
		})
	}
	for _, t := range tasks {
		select {
		case next <- t:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("backtest: %w", err)
	}
	rep.Scores = score(rep)
	return rep, nil
}

func replay(ctx context.Context, e *verdict.Engine, req verdict.Request, policy string, now time.Time) BacktestResult {
	v, err := e.Replay(ctx, req, now)
	if err != nil {
		return BacktestResult{Policy: policy, Decision: verdict.Error, Error: err.Error(), Summary: "No verdict: " + err.Error()}
	}
	r := BacktestResult{Policy: policy, Decision: v.Decision, Final: v.Final, Seconds: v.TrafficSeconds, Summary: v.Summary}
	for _, s := range v.Signals {
		if s.Status == verdict.StatusFail {
			r.Failing = append(r.Failing, s.Name)
		}
	}
	return r
}

func (b Backtester) service(d Deployment) catalog.Service {
	if b.Catalog == nil {
		return catalog.Service{}
	}
	svc, _ := b.Catalog.Service(d.Service, d.Environment)
	return svc
}

func (b Backtester) inCatalog(d Deployment) bool {
	if b.Catalog == nil {
		return false
	}
	_, ok := b.Catalog.Service(d.Service, d.Environment)
	return ok
}

// request is the verification d would have started (its window and
// signals come from the policy), or why it cannot be replayed; earlier are
// the deployments started before it.
func (b Backtester) request(d Deployment, earlier []Deployment) (verdict.Request, string) {
	svc, ok := b.service(d), b.inCatalog(d)
	req := verdict.Request{Service: d.Service, Environment: d.Environment, Version: d.Version, Baseline: d.PreviousVersion, Start: d.StartedAt}
	if ok {
		req.Matchers, req.Namespace = svc.Matchers, svc.Namespace
	}
	for i := len(earlier) - 1; i >= 0 && req.Baseline == ""; i-- {
		if e := earlier[i]; e.Service == d.Service && e.Environment == d.Environment && e.Version != d.Version {
			req.Baseline = e.Version
		}
	}
	if req.Baseline == d.Version {
		return req, "the previous version is the same version"
	}
	if req.Baseline == "" {
		if !hasSLOs(svc, ok) {
			return req, "no previous version, and no SLO in the catalog to judge a first deploy against"
		}
		req.FirstDeploy = true
	}
	return req, ""
}

// truth is what happened after d: the user's label, else a deployment of
// the previous version (previous) within the horizon (a human rollback),
// else a critical alert for the service and version within it, else
// nothing (good). A truth that cannot be told (the alerts query failed) is
// unknown and counts neither way.
func (b Backtester) truth(ctx context.Context, d Deployment, previous string, all []Deployment, opts BacktestOptions) Truth {
	for _, l := range opts.Labels {
		if l.matches(d) {
			return Truth{Label: l.Label, Source: TruthFromLabel}
		}
	}
	horizon := d.StartedAt.Add(opts.RollbackWithin)
	end := horizon
	for _, n := range all {
		if n.Service != d.Service || n.Environment != d.Environment || !n.StartedAt.After(d.StartedAt) || n.StartedAt.After(horizon) {
			continue
		}
		if previous != "" && n.Version == previous {
			return Truth{Label: TruthBad, Source: TruthFromRollback,
				Detail: fmt.Sprintf("%s deployed again %s later", n.Version, verdictDuration(n.StartedAt.Sub(d.StartedAt)))}
		}
		if n.StartedAt.Before(end) {
			end = n.StartedAt // alerts after the next deployment are not this one's
		}
	}
	if end.After(opts.Now) {
		end = opts.Now
	}
	if !end.After(d.StartedAt) {
		return Truth{Label: TruthGood, Source: TruthFromNothing}
	}
	sel := fmt.Sprintf(`alertstate="firing",severity="critical",service=%q`, d.Service)
	if d.Environment != "" {
		sel += fmt.Sprintf(",environment=%q", d.Environment)
	}
	// An alert with the version's label, or without a version label while
	// the version was the current one.
	sel += fmt.Sprintf(`,version=~"%s|"`, regexp.QuoteMeta(d.Version))
	step := max(b.Step, time.Duration(math.Ceil(end.Sub(d.StartedAt).Seconds()/1000))*time.Second)
	pts, err := b.Querier.QueryRange(ctx, fmt.Sprintf("max(ALERTS{%s})", sel), d.StartedAt, end, step)
	if err != nil {
		return Truth{Label: TruthUnknown, Source: TruthFromAlert, Detail: "the alerts could not be read: " + err.Error()}
	}
	if len(pts) > 0 {
		at := time.UnixMilli(pts[0].T)
		return Truth{Label: TruthBad, Source: TruthFromAlert, Detail: fmt.Sprintf("a critical alert fired %s after the start", verdictDuration(at.Sub(d.StartedAt)))}
	}
	return Truth{Label: TruthGood, Source: TruthFromNothing}
}

func verdictDuration(d time.Duration) string { return model.Duration(d.Round(time.Second)).String() }

// score compares each policy's verdicts with the truth, overall and per service.
func score(rep BacktestReport) []PolicyScores {
	out := make([]PolicyScores, len(rep.Policies))
	for i, p := range rep.Policies {
		overall := &tally{}
		services := map[string]*tally{}
		for _, d := range rep.Deployments {
			r := d.Results[i]
			overall.add(d.Truth.Label, r)
			t, ok := services[d.Service]
			if !ok {
				t = &tally{}
				services[d.Service] = t
			}
			t.add(d.Truth.Label, r)
		}
		out[i] = PolicyScores{Policy: p.Name, Overall: overall.scores(), Services: map[string]Scores{}}
		for name, t := range services {
			out[i].Services[name] = t.scores()
		}
	}
	return out
}

type tally struct {
	s     Scores
	times []float64
}

func (t *tally) add(truth string, r BacktestResult) {
	t.s.Deployments++
	switch truth {
	case TruthBad:
		t.s.Bad++
	case TruthGood:
		t.s.Good++
	}
	switch r.Decision {
	case verdict.Rollback:
		t.s.Rollbacks++
		switch truth {
		case TruthBad:
			t.s.TruePositives++
		case TruthGood:
			t.s.FalsePositives++
		}
	case verdict.Promote:
		t.s.Promotions++
	case verdict.Error:
		t.s.Errors++
	default:
		t.s.Inconclusive++
	}
	if truth == TruthBad && r.Decision != verdict.Rollback {
		t.s.Missed++
	}
	if r.Final && r.Decision != verdict.Error {
		t.times = append(t.times, r.Seconds)
	}
}

func (t *tally) scores() Scores {
	s := t.s
	ratio := func(a, b int) *float64 {
		if b == 0 {
			return nil
		}
		v := float64(a) / float64(b)
		return &v
	}
	s.Precision = ratio(s.TruePositives, s.TruePositives+s.FalsePositives)
	s.Recall = ratio(s.TruePositives, s.Bad)
	s.FalseRollbackRate = ratio(s.FalsePositives, s.Good)
	if len(t.times) > 0 {
		sort.Float64s(t.times)
		q := func(p float64) *float64 {
			v := t.times[min(int(math.Ceil(p*float64(len(t.times))))-1, len(t.times)-1)]
			return &v
		}
		s.MedianSeconds, s.P95Seconds = q(0.5), q(0.95)
	}
	return s
}
