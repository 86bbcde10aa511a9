package verdict

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// Counts are the events a ratio signal counts on one side: the bad ones
// (errors) and all of them (requests), summed over the analysis.
type Counts struct {
	Bad, Total float64
}

// Ratio is the share of bad events (NaN without events).
func (c Counts) Ratio() float64 {
	if c.Total <= 0 {
		return math.NaN()
	}
	return c.Bad / c.Total
}

// sumCounts adds up per-step counts, skipping what is not a count (NaN, or
// negative after a counter reset).
func sumCounts(bad, total []float64) Counts {
	var c Counts
	for _, v := range bad {
		if v >= 0 && !math.IsInf(v, 0) {
			c.Bad += v
		}
	}
	for _, v := range total {
		if v >= 0 && !math.IsInf(v, 0) {
			c.Total += v
		}
	}
	return c
}

// RatioLLR is the log likelihood ratio of "the canary's rate of bad events
// is worse than the baseline's by the regression" against "it is no worse",
// from the counts of both sides. The regression is max(rate × (1 +
// tolerance), rate + floor): a relative worsening, or an absolute one where
// the baseline's rate is near zero. Bad events are Poisson with rate × total
// on each side (which also fits several log lines per request); the
// baseline's unknown rate is set, under each hypothesis, to the value that
// makes the counts most likely (a profile likelihood), so no estimate of it
// is taken as exact.
func RatioLLR(canary, baseline Counts, tolerance, floor float64) float64 {
	c, nc, b, nb := canary.Bad, canary.Total, baseline.Bad, baseline.Total
	loglik := func(muC, muB float64) float64 { return xlogy(c, muC) - muC + xlogy(b, muB) - muB }
	// No worse: one rate for both sides.
	l0 := (c + b) / (nc + nb)
	ll0 := loglik(l0*nc, l0*nb)
	// Worse by the regression. Above the rate where the relative and the
	// absolute worsening are equal the relative one is larger, below it the
	// absolute one: the likelihood is maximised in each region and the
	// larger maximum kept.
	theta := 1 + tolerance
	cross := math.Inf(1) // rate above which the relative worsening applies
	if theta > 1 {
		cross = floor / (theta - 1)
	}
	ll1 := math.Inf(-1)
	if !math.IsInf(cross, 1) {
		l := math.Max((c+b)/(theta*nc+nb), cross)
		ll1 = loglik(theta*l*nc, l*nb)
	}
	if cross > 0 && floor > 0 {
		// d/dl [c ln(l+d) - (l+d) nc + b ln l - l nb] = 0 is
		// N l^2 + (N d - c - b) l - b d = 0 with N = nc + nb.
		n, d := nc+nb, floor
		q := n*d - c - b
		l := (-q + math.Sqrt(q*q+4*n*b*d)) / (2 * n)
		l = math.Min(math.Max(l, 0), cross)
		ll1 = math.Max(ll1, loglik((l+d)*nc, l*nb))
	}
	if math.IsInf(ll1, -1) {
		return math.Inf(-1) // no regression is defined (tolerance and floor zero)
	}
	return ll1 - ll0
}

func xlogy(x, y float64) float64 {
	if x == 0 {
		return 0
	}
	return x * math.Log(y)
}

// worseP is the one-sided p-value of "the canary's rate is higher than the
// baseline's": given all the bad events of both sides, the share that fell
// on the canary is binomial under equal rates (the conditional test of two
// Poisson rates).
func worseP(canary, baseline Counts) float64 {
	k := canary.Bad + baseline.Bad
	if k == 0 {
		return 1
	}
	share := canary.Total / (canary.Total + baseline.Total)
	k, c := math.Round(k), math.Round(canary.Bad)
	if c <= 0 {
		return 1
	}
	return 1 - distuv.Binomial{N: k, P: share}.CDF(c-1)
}

// poissonAtLeast is P(X >= x) for X Poisson with mean mu.
func poissonAtLeast(x, mu float64) float64 {
	x = math.Round(x)
	if x <= 0 {
		return 1
	}
	if mu <= 0 {
		return 0
	}
	return 1 - distuv.Poisson{Lambda: mu}.CDF(x-1)
}

// poissonAtMost is P(X <= x) for X Poisson with mean mu.
func poissonAtMost(x, mu float64) float64 {
	if mu <= 0 {
		return 1
	}
	return distuv.Poisson{Lambda: mu}.CDF(math.Round(x))
}

// judgeRatio judges a ratio signal (errors among requests) on its counts
// with Wald's sequential probability ratio test: judged again at every
// step, it fails once the evidence for the regression reaches
// (1-beta)/alpha to 1 and passes once the evidence against it reaches
// (1-alpha)/beta to 1. Its error rates hold however often it is looked at,
// which a fixed-sample test re-run every step does not give: so alpha can
// be the false-rollback rate itself, rather than a per-look share of it.
// It returns the canary events a pending signal still needs to pass
// (+Inf: none will do at the current ratio).
func judgeRatio(p Policy, sig Signal, s Samples, r *SignalResult, final bool) float64 {
	cc, bc := sumCounts(s.Canary, s.CanaryTotal), sumCounts(s.Baseline, s.BaselineTotal)
	r.Samples = [2]int{countSteps(s.CanaryTotal), countSteps(s.BaselineTotal)}
	r.Canary, r.Baseline = ptr(cc.Ratio()), ptr(bc.Ratio())
	r.Counts = &[2]Counts{cc, bc}
	if ratioBoundBroken(p, sig, cc, r) {
		return 0
	}
	if s.CanaryAbsent || s.BaselineAbsent {
		// The bad events' source sent nothing: not zero bad events.
		r.Status = StatusNoData
		side := "either version"
		switch {
		case !s.CanaryAbsent:
			side = "the baseline"
		case !s.BaselineAbsent:
			side = "the new version"
		}
		if s.CanaryAbsent {
			r.Canary, r.Counts = nil, nil
		}
		if s.BaselineAbsent {
			r.Baseline = nil
		}
		r.Reason = "no input from " + side + " (its presence query has no data)"
		return 0
	}
	if cc.Total <= 0 || bc.Total <= 0 {
		r.Status = StatusNoData
		r.Reason = fmt.Sprintf("%.0f canary and %.0f baseline events, some needed on each side", cc.Total, bc.Total)
		return 0
	}
	if sig.Tolerance == 0 && sig.Floor == 0 {
		r.Status, r.Reason = StatusPass, "no regression defined (tolerance and floor are zero); only its bounds are checked"
		return 0
	}
	mc, mb := cc.Ratio(), bc.Ratio()
	worse := mc - mb
	regression := math.Max(sig.Tolerance*mb, sig.Floor)
	pv := worseP(cc, bc)
	r.PValue = ptr(pv)
	if mb > 0 {
		r.EffectSize = ptr(worse / mb)
	}
	llr := RatioLLR(cc, bc, sig.Tolerance, sig.Floor)
	r.LogLR = ptr(llr)
	upper, lower := p.ratioBounds()
	evidence := fmt.Sprintf("%.0f of %.0f vs %.0f of %.0f", cc.Bad, cc.Total, bc.Bad, bc.Total)
	switch {
	case llr >= upper:
		r.Status = StatusFail
		r.Reason = fmt.Sprintf("worse by %s (%s): %s to 1 for a regression of %s over none", fmtDelta(worse, mb), evidence, odds(llr), fmtDelta(regression, mb))
		return 0
	case llr <= lower:
		r.Status = StatusPass
		r.Reason = fmt.Sprintf("within tolerance (%s): %s to 1 against a regression of %s", evidence, odds(-llr), fmtDelta(regression, mb))
		return 0
	case final && llr > (upper+lower)/2:
		r.Status, r.Finding = StatusPending, FindingSuspect
		r.Reason = fmt.Sprintf("suspect: worse by %s (%s), %s to 1 for a regression of %s, not yet the %s to 1 needed", fmtDelta(worse, mb), evidence, odds(llr), fmtDelta(regression, mb), odds(upper))
	case final:
		r.Status = StatusPending
		r.Reason = fmt.Sprintf("no evidence of a regression (%s, %s to 1 against %s)", evidence, odds(-llr), fmtDelta(regression, mb))
	default:
		r.Status = StatusPending
		r.Reason = fmt.Sprintf("difference %s (%s): likelihood ratio %s to 1 for a regression of %s, %s to 1 either way decides", fmtDelta(worse, mb), evidence, odds(llr), fmtDelta(regression, mb), odds(upper))
	}
	// Leaning: past half way, in log odds, to a boundary.
	switch {
	case llr >= upper/2:
		r.Leaning = LeaningRollback
	case llr <= lower/2:
		r.Leaning = LeaningPromote
	default:
		r.Leaning = LeaningUndecided
	}
	return ratioEventsToPass(cc, bc, sig, lower)
}

// ratioBounds are the log likelihood ratios at which a ratio signal fails
// (upper) and passes (lower).
func (p Policy) ratioBounds() (upper, lower float64) {
	return math.Log((1 - p.Beta) / p.Alpha), math.Log(p.Beta / (1 - p.Alpha))
}

// ratioEventsToPass is how many more canary events (requests) take the log
// likelihood ratio to the pass boundary if from now on the canary is as
// good as the baseline — its ratio the baseline's — and the baseline's
// counts stay as they are: the expected path of the sequential test under
// "no worse", whose drift per event sets its average sample number. +Inf
// when it does not get there (within a thousand times the events so far).
func ratioEventsToPass(cc, bc Counts, sig Signal, lower float64) float64 {
	ratio := bc.Ratio()
	return eventsUntil(cc.Total, func(m float64) bool {
		return RatioLLR(Counts{Bad: cc.Bad + ratio*m, Total: cc.Total + m}, bc, sig.Tolerance, sig.Floor) <= lower
	})
}

// eventsUntil is the fewest more events m (to about 1%) for which ok(m)
// holds, ok turning true once and staying so; +Inf when it does not hold
// within a thousand times the events so far (at least 100,000).
func eventsUntil(sofar float64, ok func(m float64) bool) float64 {
	hi := math.Max(sofar, 1)
	for !ok(hi) {
		hi *= 2
		if hi > 1000*math.Max(sofar, 100) {
			return math.Inf(1)
		}
	}
	lo := 0.0
	for hi-lo > math.Max(1, hi/100) {
		mid := (lo + hi) / 2
		if ok(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return math.Ceil(hi)
}

// ratioBoundBroken fails a ratio signal whose canary count is significantly
// beyond an absolute bound (an SLO); it reports whether it did.
func ratioBoundBroken(p Policy, sig Signal, cc Counts, r *SignalResult) bool {
	if cc.Total <= 0 || r.Samples[0] < p.MinSamples {
		return false
	}
	if sig.Max != nil {
		if pv := poissonAtLeast(cc.Bad, *sig.Max*cc.Total); cc.Ratio() > *sig.Max && pv < p.Alpha {
			r.Status, r.Finding, r.PValue = StatusFail, FindingBound, ptr(pv)
			r.Reason = fmt.Sprintf("absolute bound broken: canary %.4g (%.0f of %.0f) > max %.4g, p=%.2g", cc.Ratio(), cc.Bad, cc.Total, *sig.Max, pv)
			return true
		}
	}
	if sig.Min != nil {
		if pv := poissonAtMost(cc.Bad, *sig.Min*cc.Total); cc.Ratio() < *sig.Min && pv < p.Alpha {
			r.Status, r.Finding, r.PValue = StatusFail, FindingBound, ptr(pv)
			r.Reason = fmt.Sprintf("absolute bound broken: canary %.4g (%.0f of %.0f) < min %.4g, p=%.2g", cc.Ratio(), cc.Bad, cc.Total, *sig.Min, pv)
			return true
		}
	}
	return false
}

// judgeBounds judges a signal of a version without a baseline (a first
// deploy) against its absolute bounds alone: it fails when a bound is
// broken (as judgeRatio and judgeCompare fail it), passes early once the
// version is shown to be within every bound (for a ratio signal, its count
// significantly within: Poisson, p < alpha; for a compare signal, the
// mean's confidence bound within), and at the end of the window passes
// when no bound was broken. A signal without a bound has no data: there is
// nothing to compare it with. It returns the steps a pending compare
// signal still needs, or the canary events a pending ratio signal needs.
func judgeBounds(p Policy, sig Signal, s Samples, r *SignalResult, final bool) float64 {
	if sig.Max == nil && sig.Min == nil {
		r.Status, r.Finding = StatusNoData, FindingNoBaseline
		r.Reason = "no previous version to compare with"
		if sig.Kind == KindRatio {
			cc := sumCounts(s.Canary, s.CanaryTotal)
			r.Canary, r.Counts = ptr(cc.Ratio()), &[2]Counts{cc, {}}
			r.Samples = [2]int{countSteps(s.CanaryTotal), 0}
		} else if c := finite(s.Canary); len(c) > 0 {
			r.Canary, r.Samples = ptr(mean(c)), [2]int{len(c), 0}
		}
		return 0
	}
	if sig.Kind == KindRatio {
		cc := sumCounts(s.Canary, s.CanaryTotal)
		r.Samples = [2]int{countSteps(s.CanaryTotal), 0}
		r.Canary, r.Counts = ptr(cc.Ratio()), &[2]Counts{cc, {}}
		if ratioBoundBroken(p, sig, cc, r) {
			return 0
		}
		if cc.Total <= 0 {
			r.Status, r.Reason = StatusNoData, "no events of the new version"
			return 0
		}
		pvMax, pvMin := 0.0, 0.0 // chance of a count this far within each bound were the ratio at the bound
		if sig.Max != nil {
			pvMax = poissonAtMost(cc.Bad, *sig.Max*cc.Total)
		}
		if sig.Min != nil {
			pvMin = poissonAtLeast(cc.Bad, *sig.Min*cc.Total)
		}
		pv := math.Max(pvMax, pvMin)
		r.PValue = ptr(pv)
		if pv < p.Alpha {
			r.Status, r.Reason = StatusPass, fmt.Sprintf("within its bounds (%.0f of %.0f, p=%.2g)", cc.Bad, cc.Total, pv)
			return 0
		}
		r.Status = StatusPending
		r.Reason = fmt.Sprintf("bounds not broken (%.0f of %.0f) but not yet shown to hold (p=%.2g)", cc.Bad, cc.Total, pv)
		r.Leaning = boundLeaning(cc.Ratio(), sig)
		if sig.Max == nil || sig.Min != nil || cc.Ratio() >= *sig.Max {
			return math.Inf(1)
		}
		// Events until the count, going on at the ratio so far, is
		// significantly within max.
		ratio := cc.Ratio()
		return eventsUntil(cc.Total, func(m float64) bool {
			return poissonAtMost(cc.Bad+ratio*m, *sig.Max*(cc.Total+m)) < p.Alpha
		})
	}
	c := finite(s.Canary)
	r.Samples = [2]int{len(c), 0}
	if len(c) > 0 {
		r.Canary = ptr(mean(c))
	}
	if brokenBound(p, sig, c, r) {
		return 0
	}
	if len(c) == 0 {
		r.Status, r.Reason = StatusNoData, "no samples of the new version"
		return 0
	}
	if len(c) < p.MinSamples {
		r.Status, r.Finding, r.Leaning = StatusPending, FindingFewSamples, LeaningUndecided
		r.Reason = fmt.Sprintf("%d samples, %d needed", len(c), p.MinSamples)
		return float64(p.MinSamples - len(c))
	}
	mc, se := mean(c), math.Sqrt(variance(c)/float64(len(c)))
	within := (sig.Max == nil || mc+p.Confidence*se <= *sig.Max) && (sig.Min == nil || mc-p.Confidence*se >= *sig.Min)
	if within {
		r.Status, r.Reason = StatusPass, fmt.Sprintf("within its bounds (mean %.4g ± %.2g)", mc, p.Confidence*se)
		return 0
	}
	r.Status = StatusPending
	r.Reason = fmt.Sprintf("bounds not broken (mean %.4g) but not yet shown to hold (± %.2g)", mc, p.Confidence*se)
	r.Leaning = boundLeaning(mc, sig)
	room := math.Inf(1)
	if sig.Max != nil {
		room = *sig.Max - mc
	}
	if sig.Min != nil {
		room = math.Min(room, mc-*sig.Min)
	}
	if room <= 0 || variance(c) == 0 {
		return math.Inf(1)
	}
	n := variance(c) * p.Confidence * p.Confidence / (room * room)
	return math.Max(math.Ceil(n)-float64(len(c)), 1)
}

// boundLeaning: a value within half of the room to its bound leans
// promote; past the bound, rollback.
func boundLeaning(v float64, sig Signal) string {
	switch {
	case sig.Max != nil && v > *sig.Max, sig.Min != nil && v < *sig.Min:
		return LeaningRollback
	case sig.Max != nil && v <= *sig.Max/2:
		return LeaningPromote
	}
	return LeaningUndecided
}

// odds renders exp(llr) as a readable ratio.
func odds(llr float64) string {
	v := math.Exp(llr)
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1e", v)
	case v >= 10:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.2g", v)
	}
}

func countSteps(total []float64) int {
	n := 0
	for _, v := range total {
		if v > 0 && !math.IsInf(v, 0) {
			n++
		}
	}
	return n
}
