package verdict

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
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
	StatusPass Status = "pass" // no worse than baseline within tolerance, shown with confidence
	// StatusPending: not significantly worse, not yet shown to be fine; or
	// some input but fewer samples than policy.min_samples (finding
	// few_samples), which is not judged yet.
	StatusPending Status = "pending"
	StatusFail    Status = "fail"
	// StatusNoData: the signal had no input at all (no sample of the new
	// version, or none of the version it is compared with).
	StatusNoData Status = "nodata"
)

// Leanings: which way a signal not yet decided is heading.
const (
	LeaningPromote   = "promote"
	LeaningRollback  = "rollback"
	LeaningUndecided = "undecided"
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
	// FindingFewSamples: pending because a side has fewer samples than
	// policy.min_samples; it does not count in the score yet.
	FindingFewSamples Finding = "few_samples"
	// FindingNoBaseline: no data because there is no previous version to
	// compare with (a first deploy): only absolute bounds are judged.
	FindingNoBaseline Finding = "no_baseline"
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
	// CanaryAbsent and BaselineAbsent: the signal's Presence query had no
	// sample on that side, which then has no data.
	CanaryAbsent, BaselineAbsent bool
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
	Counts     *[2]Counts `json:"counts,omitempty"`
	EffectSize *float64   `json:"effectSize,omitempty"` // relative worsening of the mean (0.5: 50% worse)
	Samples    [2]int     `json:"samples"`              // canary, baseline
	Reason     string     `json:"reason"`
	// Text says the same as Reason in plain words, with units: what a
	// person reads ("error ratio 4.1% vs 0.9% on the previous version (38
	// of 920 requests vs 41 of 4,500): significantly worse").
	Text string `json:"text"`
	// Leaning is which way a pending signal is heading (LeaningPromote,
	// LeaningRollback, LeaningUndecided); empty once it passed or failed,
	// and without data. A ratio signal leans once its log likelihood ratio
	// is past half way (in log odds) to a boundary; a compare signal leans
	// rollback when its point estimate is worse than allowed and promote
	// when it is within half of what is allowed.
	Leaning string `json:"leaning,omitempty"`
	// History is the signal as judged at each step (every step, or at most
	// maxHistory evenly spaced steps of a long window), to see when and why
	// it crossed its line. Kept in the status API and the newest stored
	// verdicts (deploy's store trims older ones), never in the series.
	History       []Step `json:"history,omitempty"`
	Query         string `json:"query,omitempty"`
	BaselineQuery string `json:"baselineQuery,omitempty"`
	Link          string `json:"link,omitempty"`
}

// Step is a signal as judged at one step: the values compared (for a ratio
// signal the ratio of all the counts so far, for a compare signal the means
// of the samples so far) and the test statistic, the log likelihood ratio
// of a ratio signal or the p-value of a compare signal.
type Step struct {
	At       time.Time `json:"at"`
	Canary   *float64  `json:"canary,omitempty"`
	Baseline *float64  `json:"baseline,omitempty"`
	LogLR    *float64  `json:"logLikelihoodRatio,omitempty"`
	PValue   *float64  `json:"pValue,omitempty"`
	Status   Status    `json:"status"`
}

// Needed is roughly how much more traffic of the new version a promotion
// needs at the current rate: see Judge for how it is estimated.
type Needed struct {
	Requests int64   `json:"requests"`
	Seconds  float64 `json:"seconds"`
}

// Judgement is the decision over a set of signal samples.
type Judgement struct {
	Decision Decision `json:"decision"`
	Score    float64  `json:"score"`
	Reason   string   `json:"reason"`
	Final    bool     `json:"final"`
	NeedSecs float64  `json:"needSeconds,omitempty"`
	// Needed is roughly how much more traffic a promotion needs at the
	// current rate, while the verdict is undecided and a promotion is in
	// sight (nil otherwise).
	Needed  *Needed        `json:"needed,omitempty"`
	Signals []SignalResult `json:"signals"`
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
	// BoundsOnly judges a version without a baseline (a first deploy):
	// only absolute bounds (max, min: the catalog's SLOs) and alerts count;
	// comparisons have no data. A bound passes early once the version is
	// shown within it and, at the end of the window, when it was not broken.
	BoundsOnly bool
}

// Judge decides from the samples. It is deterministic: the same samples give
// the same judgement. Before the window is over it promotes only when every
// scored signal is shown to be within tolerance, and rolls back as soon as a
// worsening is significant; at the end of the window a signal that is not
// significantly worse counts as passing.
//
// While undecided it estimates how much more traffic a promotion needs
// (Needed), at the current request rate, if from now on the new version is
// as good as the baseline (the hypothesis a promotion accepts): the
// requests still missing to policy.min_requests; for each pending ratio
// signal, the requests after which its log likelihood ratio reaches the
// pass boundary along that path (Wald's average sample number: the
// distance to the boundary over the drift per request), the baseline's
// counts held as they are; for each pending compare signal, the steps
// after which its promotion bound (difference + confidence × standard
// error) is within what is allowed. The largest of them, in requests and
// in seconds at the current rate; nil when none can get there.
// TestNeededPredictsPromotion (bench/verdict) holds the estimate to the
// simulator's actual promotion times.
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
		// What each pending signal still needs before it can pass: canary
		// requests (ratio signals) and steps (compare signals).
		needReq, needSteps float64
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
			var need float64
			switch {
			case prog.BoundsOnly:
				need = judgeBounds(p, sig, s, &r, final)
			case sig.Kind == KindRatio:
				need = judgeRatio(p, sig, s, &r, final)
			default:
				need = judgeCompare(p, sig, s, &r, final, math.Max(prog.Overlap, 1), prog.looks())
			}
			unjudged := r.Status == StatusNoData || r.Finding == FindingFewSamples
			if !unjudged {
				wTotal += sig.Weight
			}
			switch {
			case unjudged:
				nod = append(nod, sig.Name)
				if r.Finding == FindingFewSamples {
					needSteps = math.Max(needSteps, float64(p.MinSamples-min(r.Samples[0], r.Samples[1])))
				}
			case r.Status == StatusPass:
				wPass += sig.Weight
			case r.Status == StatusPending:
				if r.Finding == FindingSuspect {
					suspect = append(suspect, sig.Name)
				} else if final {
					wPass += sig.Weight
				}
				pending = append(pending, sig.Name)
				if sig.Kind == KindRatio {
					needReq = math.Max(needReq, need)
				} else {
					needSteps = math.Max(needSteps, need)
				}
			case r.Status == StatusFail:
				failing = append(failing, sig.Name)
				if sig.Critical || r.Finding == FindingBound {
					critical = append(critical, sig.Name)
				}
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
		if prog.BoundsOnly {
			j.Reason = "no signal with an absolute bound (an SLO) has data"
		}
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
		if prog.BoundsOnly {
			j.Reason = fmt.Sprintf("no absolute bound (SLO) broken (score %.2f)", j.Score)
		}
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
		return j
	}
	// Undecided: how much more traffic a promotion needs, when one is in sight.
	if reqRate > 0 && !math.IsInf(needReq, 1) && !math.IsInf(needSteps, 1) {
		more := math.Max(needReq, math.Max(p.MinRequests-nanZero(requests), 0))
		secs := math.Max(more/reqRate, needSteps*prog.Step)
		if math.IsNaN(requests) && more == 0 {
			secs = math.Max(secs, prog.Step) // no traffic signal: at least a step
		}
		if secs > 0 {
			secs = math.Ceil(secs)
			j.Needed = &Needed{Requests: int64(math.Ceil(math.Max(more, secs*reqRate))), Seconds: secs}
		}
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
// chance of a false failure over the whole window within alpha. It returns
// the steps a pending signal still needs to pass (+Inf: none will do at the
// current figures).
func judgeCompare(p Policy, sig Signal, s Samples, r *SignalResult, final bool, overlap, looks float64) float64 {
	alpha := p.Alpha / looks
	c, b := finite(s.Canary), finite(s.Baseline)
	r.Samples = [2]int{len(c), len(b)}
	if len(c) > 0 {
		r.Canary = ptr(mean(c))
	}
	if len(b) > 0 {
		r.Baseline = ptr(mean(b))
	}
	if brokenBound(p, sig, c, r) {
		return 0
	}
	if len(c) == 0 || len(b) == 0 {
		r.Status = StatusNoData
		r.Reason = fmt.Sprintf("%d canary and %d baseline samples, %d each needed", len(c), len(b), p.MinSamples)
		return 0
	}
	if len(c) < p.MinSamples || len(b) < p.MinSamples {
		r.Status, r.Finding, r.Leaning = StatusPending, FindingFewSamples, LeaningUndecided
		r.Reason = fmt.Sprintf("%d canary and %d baseline samples, %d each needed", len(c), len(b), p.MinSamples)
		return float64(p.MinSamples - min(len(c), len(b)))
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
	vc, vb := variance(c), variance(b)
	se := math.Sqrt(overlap * (vc/float64(len(c)) + vb/float64(len(b))))
	switch {
	case pv < alpha:
		r.Status = StatusFail
		r.Reason = fmt.Sprintf("worse by %s (allowed %s), p=%.2g", fmtDelta(worse, mb), fmtDelta(allowed, mb), pv)
		return 0
	case worse+p.Confidence*se <= allowed:
		r.Status = StatusPass
		r.Reason = fmt.Sprintf("within tolerance (upper bound %s, allowed %s)", fmtDelta(worse+p.Confidence*se, mb), fmtDelta(allowed, mb))
		return 0
	}
	r.Status = StatusPending
	r.Reason = fmt.Sprintf("difference %s not significant (p=%.2g) but not yet bounded within %s", fmtDelta(worse, mb), pv, fmtDelta(allowed, mb))
	if final {
		r.Reason = fmt.Sprintf("not significantly worse (p=%.2g, difference %s)", pv, fmtDelta(worse, mb))
	}
	switch {
	case worse > allowed:
		r.Leaning = LeaningRollback
	case worse <= allowed/2:
		r.Leaning = LeaningPromote
	default:
		r.Leaning = LeaningUndecided
	}
	if worse > allowed {
		r.Finding = FindingSuspect
		r.Reason = fmt.Sprintf("suspect: worse by %s, beyond the %s allowed, but not significantly (p=%.2g)", fmtDelta(worse, mb), fmtDelta(allowed, mb), pv)
	}
	return compareStepsToPass(p, len(c), len(b), worse, vc, vb, allowed, overlap)
}

// compareStepsToPass is how many more steps a pending compare signal needs
// to pass if from now on the canary's samples are as good as the
// baseline's (their mean the baseline's, their spread the canary's so far):
// the difference of means shrinks as n/n', the standard error as 1/√n',
// until difference + confidence × standard error is within what is allowed.
// +Inf when the baseline's own spread keeps the bound above it.
func compareStepsToPass(p Policy, nc, nb int, worse, vc, vb, allowed, overlap float64) float64 {
	ok := func(m float64) bool {
		n := float64(nc) + m
		w := worse * float64(nc) / n
		return w+p.Confidence*math.Sqrt(overlap*(vc/n+vb/float64(nb))) <= allowed
	}
	return eventsUntil(float64(nc), ok)
}

// brokenBound fails a compare signal whose canary mean breaks an absolute
// bound (once it has min_samples samples); it reports whether it did.
func brokenBound(p Policy, sig Signal, c []float64, r *SignalResult) bool {
	if len(c) < p.MinSamples {
		return false
	}
	mc := mean(c)
	if sig.Max != nil && mc > *sig.Max {
		r.Status, r.Finding, r.Reason = StatusFail, FindingBound, fmt.Sprintf("absolute bound broken: canary %.4g > max %.4g", mc, *sig.Max)
		return true
	}
	if sig.Min != nil && mc < *sig.Min {
		r.Status, r.Finding, r.Reason = StatusFail, FindingBound, fmt.Sprintf("absolute bound broken: canary %.4g < min %.4g", mc, *sig.Min)
		return true
	}
	return false
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
