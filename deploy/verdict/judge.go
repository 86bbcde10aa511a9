package verdict

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Decision is what the pipeline should do.
type Decision string

// Decisions.
const (
	Promote      Decision = "promote"
	Rollback     Decision = "rollback"
	Inconclusive Decision = "inconclusive"
	// Error is the final decision of a verification that could not be
	// evaluated (its queries kept failing, or it outlived its window): no
	// verdict on the version, and never a reason to act.
	Error Decision = "error"
)

// Status is a signal's state in a judgement.
type Status string

// Signal statuses.
const (
	StatusPass    Status = "pass"    // no worse than baseline within tolerance, shown with confidence
	StatusPending Status = "pending" // not significantly worse, not yet shown to be fine
	StatusFail    Status = "fail"
	StatusNoData  Status = "nodata"
)

// Finding qualifies a status with what decided it, for the judgement to
// read (the Reason is for people).
type Finding string

// Findings.
const (
	// FindingBound: failed because an absolute bound (max or min) is broken.
	FindingBound Finding = "bound"
	// FindingSuspect: pending, and worse than allowed by the point
	// estimate, but not significantly.
	FindingSuspect Finding = "suspect"
)

// Policy holds the thresholds of a decision.
type Policy struct {
	// Alpha is the chance that a canary no worse than its baseline fails a
	// signal over the whole analysis: the level of the sequential test of a
	// ratio signal, and shared among the looks (alpha / looks each) by the
	// Mann-Whitney test of a compare signal.
	Alpha float64 `yaml:"alpha" json:"alpha"`
	// Beta is the chance that a ratio signal worse by its regression
	// (tolerance or floor) passes.
	Beta float64 `yaml:"beta" json:"beta"`
	// Confidence is the z of the bound that shows a signal is no worse than
	// the tolerance, for an early promotion.
	Confidence float64 `yaml:"confidence" json:"confidence"`
	// MinSamples is the fewest samples each side needs before a signal is judged.
	MinSamples int `yaml:"min_samples" json:"minSamples"`
	// MinRequests is the fewest canary requests before anything is decided
	// (a firing critical alert or SLO breach aside).
	MinRequests float64 `yaml:"min_requests" json:"minRequests"`
	// PassScore is the weighted share of passing signals needed to promote;
	// below it, with any signal failing, the verdict is rollback.
	PassScore float64 `yaml:"pass_score" json:"passScore"`
}

// DefaultPolicy is what the verdict-quality benchmark (bench/verdict) was
// tuned with, for the default 10-minute window.
func DefaultPolicy() Policy {
	return Policy{Alpha: 0.005, Beta: 0.1, Confidence: 1.64, MinSamples: 3, MinRequests: 200, PassScore: 0.9}
}

// Validate checks the policy.
func (p Policy) Validate() error {
	switch {
	case !(p.Alpha > 0 && p.Alpha < 0.5):
		return fmt.Errorf("alpha must be in (0, 0.5), got %v", p.Alpha)
	case !(p.Beta > 0 && p.Beta < 0.5):
		return fmt.Errorf("beta must be in (0, 0.5), got %v", p.Beta)
	case p.Confidence <= 0:
		return fmt.Errorf("confidence must be positive, got %v", p.Confidence)
	case p.MinSamples < 2:
		return fmt.Errorf("min_samples must be at least 2, got %d", p.MinSamples)
	case p.MinRequests < 0:
		return fmt.Errorf("min_requests must not be negative, got %v", p.MinRequests)
	case !(p.PassScore > 0 && p.PassScore <= 1):
		return fmt.Errorf("pass_score must be in (0, 1], got %v", p.PassScore)
	}
	return nil
}

// Samples are one signal's values at each step for the canary and the
// baseline. For a ratio signal they are the bad events per step, and
// CanaryTotal and BaselineTotal all events per step.
type Samples struct {
	Signal                     Signal
	Canary, Baseline           []float64
	CanaryTotal, BaselineTotal []float64
}

// SignalResult is one signal's part of the verdict.
type SignalResult struct {
	Name      string    `json:"name"`
	Kind      Kind      `json:"kind"`
	Direction Direction `json:"direction,omitempty"`
	Status    Status    `json:"status"`
	Finding   Finding   `json:"finding,omitempty"`
	Critical  bool      `json:"critical,omitempty"`
	Weight    float64   `json:"weight,omitempty"`
	Baseline  *float64  `json:"baseline,omitempty"` // mean of the baseline samples
	Canary    *float64  `json:"canary,omitempty"`   // mean of the canary samples
	PValue    *float64  `json:"pValue,omitempty"`
	// LogLR is a ratio signal's log likelihood ratio of "worse by the
	// regression" over "no worse" (fails at ln((1-beta)/alpha), passes at
	// ln(beta/(1-alpha))).
	LogLR *float64 `json:"logLikelihoodRatio,omitempty"`
	// Counts are a ratio signal's bad and total events, canary then baseline.
	Counts        *[2]Counts `json:"counts,omitempty"`
	EffectSize    *float64   `json:"effectSize,omitempty"` // relative worsening of the mean (0.5: 50% worse)
	Samples       [2]int     `json:"samples"`              // canary, baseline
	Reason        string     `json:"reason"`
	Query         string     `json:"query,omitempty"`
	BaselineQuery string     `json:"baselineQuery,omitempty"`
	Link          string     `json:"link,omitempty"`
}

// Judgement is the decision over a set of signal samples.
type Judgement struct {
	Decision Decision       `json:"decision"`
	Score    float64        `json:"score"`
	Reason   string         `json:"reason"`
	Final    bool           `json:"final"`
	NeedSecs float64        `json:"needSeconds,omitempty"`
	Signals  []SignalResult `json:"signals"`
}

// Progress is how far the analysis has come.
type Progress struct {
	// Elapsed is the canary traffic time analysed; Window the most the analysis takes.
	Elapsed, Window float64 // seconds
	// Step is the seconds between samples.
	Step float64
	// Overlap is how many samples each observation appears in (the rate
	// window over the step, at least 1): overlapping windows make samples
	// correlated, so the test's variance is inflated by this factor.
	Overlap float64
}

// Judge decides from the samples. It is deterministic: the same samples give
// the same judgement. Before the window is over it promotes only when every
// scored signal is shown to be within tolerance, and rolls back as soon as a
// worsening is significant; at the end of the window a signal that is not
// significantly worse counts as passing.
func Judge(p Policy, samples []Samples, prog Progress) Judgement {
	final := prog.Elapsed >= prog.Window
	var (
		j                     = Judgement{Final: final}
		critical              []string
		failing, pending, nod []string
		suspect               []string // pending and worse than allowed by the point estimate
		wTotal, wPass         float64
		requests              = math.NaN()
		reqRate               float64
	)
	for _, s := range samples {
		sig := s.Signal.withDefaults()
		r := SignalResult{Name: sig.Name, Kind: sig.Kind, Critical: sig.Critical, Samples: [2]int{len(s.Canary), len(s.Baseline)}}
		switch sig.Kind {
		case KindAlert:
			if len(s.Canary) > 0 {
				r.Status, r.Reason = StatusFail, "a critical alert fired for the service during the analysis"
				critical = append(critical, sig.Name)
			} else {
				r.Status, r.Reason = StatusPass, "no critical alert fired"
			}
		case KindTraffic:
			// Samples are requests per step.
			if len(s.Canary) > 0 {
				r.Canary = ptr(mean(s.Canary))
				requests = sum(s.Canary)
				reqRate = requests / math.Max(prog.Elapsed, prog.Step)
			}
			if len(s.Baseline) > 0 {
				r.Baseline = ptr(mean(s.Baseline))
			}
			r.Status = StatusPass
			r.Reason = fmt.Sprintf("%.0f canary requests analysed", nanZero(requests))
			if len(s.Canary) == 0 {
				r.Status, r.Reason = StatusNoData, "no canary traffic yet"
			}
		default:
			r.Direction, r.Weight = sig.Direction, sig.Weight
			if sig.Kind == KindRatio {
				judgeRatio(p, sig, s, &r, final)
			} else {
				judgeCompare(p, sig, s, &r, final, math.Max(prog.Overlap, 1), prog.looks())
			}
			if r.Status != StatusNoData {
				wTotal += sig.Weight
			}
			switch r.Status {
			case StatusPass:
				wPass += sig.Weight
			case StatusPending:
				if r.Finding == FindingSuspect {
					suspect = append(suspect, sig.Name)
				} else if final {
					wPass += sig.Weight
				}
				pending = append(pending, sig.Name)
			case StatusFail:
				failing = append(failing, sig.Name)
				if sig.Critical || r.Finding == FindingBound {
					critical = append(critical, sig.Name)
				}
			case StatusNoData:
				nod = append(nod, sig.Name)
			}
		}
		j.Signals = append(j.Signals, r)
	}
	if wTotal > 0 {
		j.Score = wPass / wTotal
	}
	enoughTraffic := math.IsNaN(requests) || requests >= p.MinRequests
	switch {
	case len(critical) > 0:
		j.Decision, j.Reason = Rollback, fmt.Sprintf("critical: %s failed", strings.Join(critical, ", "))
	case !enoughTraffic && final:
		j.Decision, j.Reason = Inconclusive, fmt.Sprintf("window over with only %.0f canary requests, %.0f needed", requests, p.MinRequests)
	case !enoughTraffic:
		j.Decision = Inconclusive
		j.NeedSecs = math.Ceil((p.MinRequests - requests) / math.Max(reqRate, 1e-9))
		j.NeedSecs = math.Min(math.Max(j.NeedSecs, prog.Step), math.Max(prog.Window-prog.Elapsed, prog.Step))
		j.Reason = fmt.Sprintf("only %.0f canary requests so far, %.0f needed", requests, p.MinRequests)
	case len(failing) > 0 && j.Score < p.PassScore:
		j.Decision, j.Reason = Rollback, fmt.Sprintf("%s significantly worse than baseline (score %.2f)", strings.Join(failing, ", "), j.Score)
	case wTotal == 0:
		j.Decision, j.Reason = Inconclusive, "no signal has data for both the canary and the baseline"
		if !final {
			j.NeedSecs = math.Max(float64(p.MinSamples)*prog.Step-prog.Elapsed, prog.Step)
		}
	case len(pending) == 0 && !final && prog.Elapsed < float64(p.MinSamples)*prog.Step:
		j.Decision, j.Reason = Inconclusive, "too early"
		j.NeedSecs = float64(p.MinSamples)*prog.Step - prog.Elapsed
	case final && len(suspect) > 0:
		j.Decision = Inconclusive
		j.Reason = fmt.Sprintf("window over: %s looks worse than allowed but not significantly; more traffic (a longer window) is needed", strings.Join(suspect, ", "))
	case j.Score >= p.PassScore && (len(pending) == 0 || final):
		j.Decision = Promote
		j.Reason = fmt.Sprintf("no signal worse than baseline beyond tolerance (score %.2f)", j.Score)
		if len(nod) > 0 {
			j.Reason += "; no data for " + strings.Join(nod, ", ")
		}
	case final:
		j.Decision, j.Reason = Inconclusive, fmt.Sprintf("window over with score %.2f", j.Score)
	default:
		j.Decision = Inconclusive
		j.Reason = fmt.Sprintf("%s not yet shown to be within tolerance", strings.Join(pending, ", "))
		j.NeedSecs = math.Max(prog.Window-prog.Elapsed, prog.Step)
	}
	if final || j.Decision != Inconclusive {
		j.Final = true
		j.NeedSecs = 0
	}
	return j
}

// looks is how many times a signal is judged over the window: once a step.
func (p Progress) looks() float64 {
	if p.Step <= 0 || p.Window <= p.Step {
		return 1
	}
	return math.Ceil(p.Window / p.Step)
}

// judgeCompare judges a signal by comparing canary and baseline samples with
// the Mann-Whitney U test. The test is re-run at every step, so each run
// gets its share of alpha (Bonferroni: alpha / looks), which keeps the
// chance of a false failure over the whole window within alpha.
func judgeCompare(p Policy, sig Signal, s Samples, r *SignalResult, final bool, overlap, looks float64) {
	alpha := p.Alpha / looks
	c, b := finite(s.Canary), finite(s.Baseline)
	r.Samples = [2]int{len(c), len(b)}
	if len(c) > 0 {
		r.Canary = ptr(mean(c))
	}
	if len(b) > 0 {
		r.Baseline = ptr(mean(b))
	}
	if len(c) >= p.MinSamples {
		mc := mean(c)
		if sig.Max != nil && mc > *sig.Max {
			r.Status, r.Finding, r.Reason = StatusFail, FindingBound, fmt.Sprintf("absolute bound broken: canary %.4g > max %.4g", mc, *sig.Max)
			return
		}
		if sig.Min != nil && mc < *sig.Min {
			r.Status, r.Finding, r.Reason = StatusFail, FindingBound, fmt.Sprintf("absolute bound broken: canary %.4g < min %.4g", mc, *sig.Min)
			return
		}
	}
	if len(c) < p.MinSamples || len(b) < p.MinSamples {
		r.Status = StatusNoData
		r.Reason = fmt.Sprintf("%d canary and %d baseline samples, %d each needed", len(c), len(b), p.MinSamples)
		return
	}
	sign := 1.0
	x, y := c, b
	if sig.Direction == LowerIsWorse {
		sign = -1
		x, y = negate(c), negate(b)
	}
	mc, mb := mean(c), mean(b)
	worse := sign * (mc - mb)
	allowed := math.Max(sig.Tolerance*math.Abs(mb), sig.Floor)
	// The test asks whether the canary is worse than the baseline by more
	// than the tolerance: the canary's samples, less what is allowed,
	// against the baseline's.
	_, pv := mannWhitneyP(shift(x, -allowed), y, overlap)
	effect := worse / math.Max(math.Abs(mb), 1e-12)
	if mb == 0 {
		effect = math.Inf(int(math.Copysign(1, worse)))
		if worse == 0 {
			effect = 0
		}
	}
	r.PValue = ptr(pv)
	if !math.IsInf(effect, 0) {
		r.EffectSize = ptr(effect)
	}
	// Standard error of the difference of means, for the promotion bound.
	se := math.Sqrt(overlap * (variance(c)/float64(len(c)) + variance(b)/float64(len(b))))
	switch {
	case pv < alpha:
		r.Status = StatusFail
		r.Reason = fmt.Sprintf("worse by %s (allowed %s), p=%.2g", fmtDelta(worse, mb), fmtDelta(allowed, mb), pv)
	case worse+p.Confidence*se <= allowed:
		r.Status = StatusPass
		r.Reason = fmt.Sprintf("within tolerance (upper bound %s, allowed %s)", fmtDelta(worse+p.Confidence*se, mb), fmtDelta(allowed, mb))
	default:
		r.Status = StatusPending
		r.Reason = fmt.Sprintf("difference %s not significant (p=%.2g) but not yet bounded within %s", fmtDelta(worse, mb), pv, fmtDelta(allowed, mb))
		if final {
			r.Reason = fmt.Sprintf("not significantly worse (p=%.2g, difference %s)", pv, fmtDelta(worse, mb))
		}
		if worse > allowed {
			r.Finding = FindingSuspect
			r.Reason = fmt.Sprintf("suspect: worse by %s, beyond the %s allowed, but not significantly (p=%.2g)", fmtDelta(worse, mb), fmtDelta(allowed, mb), pv)
		}
	}
}

func fmtDelta(d, base float64) string {
	if base != 0 {
		return fmt.Sprintf("%+.4g (%+.0f%%)", d, 100*d/math.Abs(base))
	}
	return fmt.Sprintf("%+.4g", d)
}

func finite(v []float64) []float64 {
	out := make([]float64, 0, len(v))
	for _, x := range v {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			out = append(out, x)
		}
	}
	return out
}

func shift(v []float64, d float64) []float64 {
	out := slices.Clone(v)
	for i := range out {
		out[i] += d
	}
	return out
}

func negate(v []float64) []float64 {
	out := slices.Clone(v)
	for i := range out {
		out[i] = -out[i]
	}
	return out
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func sum(v []float64) float64 {
	var s float64
	for _, x := range v {
		if !math.IsNaN(x) {
			s += x
		}
	}
	return s
}

func variance(v []float64) float64 {
	if len(v) < 2 {
		return 0
	}
	m := mean(v)
	var s float64
	for _, x := range v {
		s += (x - m) * (x - m)
	}
	return s / float64(len(v)-1)
}

func nanZero(v float64) float64 {
	if math.IsNaN(v) {
		return 0
	}
	return v
}

func ptr(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}
