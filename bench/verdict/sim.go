// Command verdict replays simulated deployments through Vigil's verdict
// engine and reports how good its decisions are: recall on bad deploys,
// false rollbacks on healthy ones, and how much traffic time a decision
// takes.
//
// Each deployment is a canary and a baseline serving requests; every step
// (15 s, the server's default) the simulator draws that step's requests
// (Poisson), their errors (Bernoulli) and latencies (log-normal), computes
// what Vigil's default signal queries would return for the step (request
// count, error ratio, log error ratio, p50 and p99 latency) and calls
// verdict.Judge — the engine's decision, unchanged — with every sample so
// far, as a pipeline polling `vigil verify` would. The PromQL sampling is
// replaced by the simulation; everything after it is the real engine.
package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/vigilhq/vigil/deploy/verdict"
)

// Kind of simulated deployment.
type Kind string

// Kinds.
const (
	Healthy    Kind = "healthy"
	BadErrors  Kind = "bad-errors"
	BadLatency Kind = "bad-latency"
	BadBoth    Kind = "bad-both"
	LowTraffic Kind = "low-traffic"
	NoData     Kind = "no-data"
)

// Scenario is one simulated deployment.
type Scenario struct {
	Kind Kind
	// Canary and baseline request rates (req/s).
	CanaryRPS, BaselineRPS float64
	// Baseline error ratio and median latency; the canary's multipliers.
	ErrRatio, Latency    float64
	ErrFactor, LatFactor float64
}

// beyondTolerance reports whether the regression is one the default
// signals are built to catch: latency beyond the p50's 10% tolerance, or
// errors at least the error ratio's regression (+50%, at least +0.2
// percentage points).
func (s Scenario) beyondTolerance() bool {
	extra := s.ErrRatio * (s.ErrFactor - 1)
	return s.LatFactor > 1.10 || extra >= math.Max(0.5*s.ErrRatio, 0.002)
}

// Bad reports whether the deployment should be rolled back.
func (s Scenario) Bad() bool { return s.Kind == BadErrors || s.Kind == BadLatency || s.Kind == BadBoth }

// Config of a simulation run.
type Config struct {
	N      int     // deployments
	Seed   uint64  // everything is deterministic for a seed
	RPS    float64 // nominal canary request rate
	Step   time.Duration
	Window time.Duration
	Policy verdict.Policy
	// Signals replaces verdict.DefaultSignals (for tuning).
	Signals []verdict.Signal
	// Observe, when set, sees the judgement after every step i (from 1).
	Observe func(i int, j verdict.Judgement)
}

// Outcome of one deployment.
type Outcome struct {
	Scenario Scenario
	Decision verdict.Decision
	// Seconds of canary traffic when the decision was final.
	Seconds float64
	Reason  string
	// Signals are the last judgement's signal results.
	Signals []verdict.SignalResult `json:"-"`
}

// Scenarios draws n deployments: 45% healthy, 45% bad (a third with more
// errors, a third slower, a third both), 5% low traffic, 5% without data.
func Scenarios(cfg Config) []Scenario {
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))
	logU := func(lo, hi float64) float64 {
		return math.Exp(math.Log(lo) + rng.Float64()*(math.Log(hi)-math.Log(lo)))
	}
	out := make([]Scenario, 0, cfg.N)
	for i := range cfg.N {
		s := Scenario{
			CanaryRPS:   cfg.RPS * (0.7 + 0.6*rng.Float64()), // ±30% traffic variation
			BaselineRPS: cfg.RPS * (1 + 4*rng.Float64()),
			ErrRatio:    logU(0.005, 0.05),
			Latency:     logU(0.02, 0.5),
			ErrFactor:   1, LatFactor: 1,
		}
		switch f := float64(i) / float64(cfg.N); {
		case f < 0.45:
			s.Kind = Healthy
			// Realistic noise: a healthy canary is not identical either.
			s.ErrFactor = 0.9 + 0.2*rng.Float64()
			s.LatFactor = 0.95 + 0.1*rng.Float64()
		case f < 0.90:
			switch rng.IntN(3) {
			case 0:
				s.Kind, s.ErrFactor = BadErrors, logU(1.5, 10)
			case 1:
				s.Kind, s.LatFactor = BadLatency, 1+logU(0.2, 2)
			default:
				s.Kind, s.ErrFactor, s.LatFactor = BadBoth, logU(1.5, 10), 1+logU(0.2, 2)
			}
		case f < 0.95:
			s.Kind, s.CanaryRPS = LowTraffic, 0.2+0.3*rng.Float64()
		default:
			s.Kind, s.CanaryRPS = NoData, 0
		}
		out = append(out, s)
	}
	return out
}

// step draws one step of traffic and returns what Vigil's default queries
// would give for it: the requests and errors counted, the p50 and p99
// latency (NaN where a query returns nothing).
func step(rng *rand.Rand, rps, errRatio, latency float64, secs float64, lat []float64) (n, errs, p50, p99 float64) {
	cnt := poisson(rng, rps*secs)
	if cnt == 0 {
		return 0, 0, math.NaN(), math.NaN()
	}
	var e int
	lat = lat[:0]
	for range cnt {
		if rng.Float64() < errRatio {
			e++
		}
		lat = append(lat, latency*math.Exp(0.5*rng.NormFloat64()))
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return lat[min(int(p*float64(cnt)), cnt-1)] }
	return float64(cnt), float64(e), q(0.5), q(0.99)
}

func poisson(rng *rand.Rand, mean float64) int {
	if mean <= 0 {
		return 0
	}
	if mean > 50 {
		return max(0, int(math.Round(mean+math.Sqrt(mean)*rng.NormFloat64())))
	}
	l, k, p := math.Exp(-mean), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// Run simulates one deployment, judging after every step like a polling pipeline.
func Run(cfg Config, s Scenario, seed uint64) Outcome {
	rng := rand.New(rand.NewPCG(seed, 2))
	secs := cfg.Step.Seconds()
	signals := cfg.Signals
	if signals == nil {
		signals = verdict.DefaultSignals()
	}
	byName := map[string]verdict.Signal{}
	for _, sig := range signals {
		byName[sig.Name] = sig
	}
	names := []string{"request_rate", "error_ratio", "latency_p50", "latency_p99", "log_error_ratio"}
	type side struct{ values, totals map[string][]float64 }
	canary := side{map[string][]float64{}, map[string][]float64{}}
	baseline := side{map[string][]float64{}, map[string][]float64{}}
	lat := make([]float64, 0, 1024)
	add := func(m side, n, errs, p50, p99 float64) {
		m.values["request_rate"] = append(m.values["request_rate"], n)
		for _, name := range []string{"error_ratio", "log_error_ratio"} { // one error line per failed request
			if byName[name].Kind == verdict.KindRatio {
				m.values[name] = append(m.values[name], errs)
				m.totals[name] = append(m.totals[name], n)
			} else if n > 0 {
				m.values[name] = append(m.values[name], errs/n)
			}
		}
		if n > 0 {
			m.values["latency_p50"] = append(m.values["latency_p50"], p50)
			m.values["latency_p99"] = append(m.values["latency_p99"], p99)
		}
	}
	// The baseline's history: one window before the deploy.
	for range int(cfg.Window.Seconds() / secs) {
		n, errs, p50, p99 := step(rng, s.BaselineRPS, s.ErrRatio, s.Latency, secs, lat)
		add(baseline, n, errs, p50, p99)
	}
	steps := int(cfg.Window.Seconds() / secs)
	for i := 1; i <= steps; i++ {
		n, errs, p50, p99 := step(rng, s.BaselineRPS, s.ErrRatio, s.Latency, secs, lat)
		add(baseline, n, errs, p50, p99)
		n, errs, p50, p99 = step(rng, s.CanaryRPS, math.Min(s.ErrRatio*s.ErrFactor, 1), s.Latency*s.LatFactor, secs, lat)
		add(canary, n, errs, p50, p99)
		var samples []verdict.Samples
		for _, n := range names {
			samples = append(samples, verdict.Samples{Signal: byName[n], Canary: canary.values[n], Baseline: baseline.values[n],
				CanaryTotal: canary.totals[n], BaselineTotal: baseline.totals[n]})
		}
		samples = append(samples, verdict.Samples{Signal: byName["critical_alerts"]})
		j := verdict.Judge(cfg.Policy, samples, verdict.Progress{Elapsed: float64(i) * secs, Window: cfg.Window.Seconds(), Step: secs, Overlap: 1})
		if cfg.Observe != nil {
			cfg.Observe(i, j)
		}
		if j.Final {
			return Outcome{Scenario: s, Decision: j.Decision, Seconds: float64(i) * secs, Reason: j.Reason, Signals: j.Signals}
		}
	}
	return Outcome{Scenario: s, Decision: verdict.Inconclusive, Seconds: cfg.Window.Seconds(), Reason: "window over"}
}

// Report summarises outcomes.
type Report struct {
	N               int
	Healthy, Bad    int
	Recall          float64 // rollbacks among bad deploys
	FalseRollback   float64 // rollbacks among healthy deploys
	HealthyPromoted float64
	// BadPromoted is the share of bad deploys promoted (escaped); the rest
	// of the misses ended inconclusive.
	BadPromoted float64
	// RecallBeyondTolerance is the recall on bad deploys whose regression
	// the default signals are built to catch (latency +10%, errors +50% and
	// at least +0.2 percentage points).
	RecallBeyondTolerance float64
	BeyondTolerance       int
	// RecallByKind is the recall per kind of regression.
	RecallByKind        map[Kind]float64
	MedianSecs, P95Secs float64 // traffic time to a final decision, healthy and bad deploys
	MedianBadSecs       float64
	MedianHealthySecs   float64
	Other               map[Kind]map[verdict.Decision]int
	Missed              []Outcome
	FalseRollbacks      []Outcome
}

// Summarise computes the report.
func Summarise(outs []Outcome) Report {
	r := Report{N: len(outs), Other: map[Kind]map[verdict.Decision]int{}}
	var times, badTimes, okTimes []float64
	var caught, falseRB, promoted, escaped int
	kindN, kindCaught := map[Kind]int{}, map[Kind]int{}
	var beyondCaught int
	for _, o := range outs {
		switch {
		case o.Scenario.Bad():
			r.Bad++
			kindN[o.Scenario.Kind]++
			if o.Scenario.beyondTolerance() {
				r.BeyondTolerance++
				if o.Decision == verdict.Rollback {
					beyondCaught++
				}
			}
			if o.Decision == verdict.Rollback {
				caught++
				kindCaught[o.Scenario.Kind]++
			} else {
				r.Missed = append(r.Missed, o)
				if o.Decision == verdict.Promote {
					escaped++
				}
			}
			times, badTimes = append(times, o.Seconds), append(badTimes, o.Seconds)
		case o.Scenario.Kind == Healthy:
			r.Healthy++
			switch o.Decision {
			case verdict.Rollback:
				falseRB++
				r.FalseRollbacks = append(r.FalseRollbacks, o)
			case verdict.Promote:
				promoted++
			}
			times, okTimes = append(times, o.Seconds), append(okTimes, o.Seconds)
		default:
			if r.Other[o.Scenario.Kind] == nil {
				r.Other[o.Scenario.Kind] = map[verdict.Decision]int{}
			}
			r.Other[o.Scenario.Kind][o.Decision]++
		}
	}
	r.Recall = float64(caught) / math.Max(float64(r.Bad), 1)
	r.BadPromoted = float64(escaped) / math.Max(float64(r.Bad), 1)
	r.RecallBeyondTolerance = float64(beyondCaught) / math.Max(float64(r.BeyondTolerance), 1)
	r.RecallByKind = map[Kind]float64{}
	for k, n := range kindN {
		r.RecallByKind[k] = float64(kindCaught[k]) / float64(n)
	}
	r.FalseRollback = float64(falseRB) / math.Max(float64(r.Healthy), 1)
	r.HealthyPromoted = float64(promoted) / math.Max(float64(r.Healthy), 1)
	r.MedianSecs, r.P95Secs = quantile(times, 0.5), quantile(times, 0.95)
	r.MedianBadSecs, r.MedianHealthySecs = quantile(badTimes, 0.5), quantile(okTimes, 0.5)
	return r
}

func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	return s[min(int(math.Ceil(q*float64(len(s))))-1, len(s)-1)]
}

// Simulate runs every scenario.
func Simulate(cfg Config) []Outcome {
	sc := Scenarios(cfg)
	out := make([]Outcome, len(sc))
	for i, s := range sc {
		out[i] = Run(cfg, s, cfg.Seed*1_000_003+uint64(i))
	}
	return out
}

func (r Report) String() string {
	s := fmt.Sprintf("deployments: %d (healthy %d, bad %d)\n", r.N, r.Healthy, r.Bad)
	s += fmt.Sprintf("recall on bad deploys:      %.1f%%\n", 100*r.Recall)
	s += fmt.Sprintf("  beyond the default tolerance: %.1f%% of %d\n", 100*r.RecallBeyondTolerance, r.BeyondTolerance)
	s += fmt.Sprintf("  by kind: errors %.1f%%, latency %.1f%%, both %.1f%%\n", 100*r.RecallByKind[BadErrors], 100*r.RecallByKind[BadLatency], 100*r.RecallByKind[BadBoth])
	s += fmt.Sprintf("bad deploys promoted:       %.1f%% (the other misses ended inconclusive)\n", 100*r.BadPromoted)
	s += fmt.Sprintf("false rollbacks (healthy):  %.1f%%\n", 100*r.FalseRollback)
	s += fmt.Sprintf("healthy promoted:           %.1f%%\n", 100*r.HealthyPromoted)
	s += fmt.Sprintf("decision time (traffic s):  median %.0f, p95 %.0f (bad: median %.0f; healthy: median %.0f)\n", r.MedianSecs, r.P95Secs, r.MedianBadSecs, r.MedianHealthySecs)
	for _, k := range []Kind{LowTraffic, NoData} {
		s += fmt.Sprintf("%-12s decisions: %v\n", k, r.Other[k])
	}
	for _, o := range r.Missed {
		s += fmt.Sprintf("  missed %-11s errors x%.2f (base %.2f%%) latency x%.2f: %s after %.0fs: %s\n", o.Scenario.Kind, o.Scenario.ErrFactor, 100*o.Scenario.ErrRatio, o.Scenario.LatFactor, o.Decision, o.Seconds, o.Reason)
	}
	for _, o := range r.FalseRollbacks {
		s += fmt.Sprintf("  false rollback: errors x%.2f latency x%.2f after %.0fs: %s\n", o.Scenario.ErrFactor, o.Scenario.LatFactor, o.Seconds, o.Reason)
	}
	return s
}
