package verdict

import (
	"math"
	"slices"
)

// MannWhitney tests whether x tends to be larger than y (one-sided) with the
// Mann-Whitney U test and returns U for x and the one-sided p-value of "x
// is stochastically greater than y". Without ties and with a small sample
// on one side the p-value is exact (the distribution of U under the null);
// otherwise it is the normal approximation with tie and continuity
// corrections, which is what Kayenta's classifier relies on. The normal
// approximation is far too cautious in the tail for a few samples against
// many — 4 canary samples all above 80 baseline ones are p = 2.7e-4 by it
// and 5.2e-7 exactly — which would hold back every early rollback. With no
// variation at all (every value tied) p is 1. It needs at least one value
// on each side.
func MannWhitney(x, y []float64) (u, p float64) {
	return mannWhitneyP(x, y, 1)
}

// mannWhitneyP is MannWhitney with the variance inflated by overlap (for
// correlated samples, which rules the exact distribution out).
func mannWhitneyP(x, y []float64, overlap float64) (u, p float64) {
	u, z, ties := mannWhitneyZ(x, y)
	if math.IsNaN(u) {
		return u, math.NaN()
	}
	if !ties && overlap <= 1 && exactFeasible(len(x), len(y)) {
		return u, mannWhitneyExactUpper(u, len(x), len(y))
	}
	return u, pUpper(z / math.Sqrt(math.Max(overlap, 1)))
}

// exactFeasible bounds the work of the exact distribution (about
// min(m,n)^2 * max(m,n) additions).
func exactFeasible(m, n int) bool {
	return min(m, n) <= 50 && m*n <= 40000
}

// mannWhitneyExactUpper is P(U >= u) for samples of m and n values without
// ties when both come from one distribution. The number of orderings giving
// each U are the coefficients of the Gaussian binomial coefficient
// [m+n choose m](q) = prod_{i=1..k} (1-q^(j+i)) / (1-q^i), with k the smaller
// and j the larger size; every partial product is itself a polynomial with
// non-negative coefficients, so it is built one factor at a time.
func mannWhitneyExactUpper(u float64, m, n int) float64 {
	k, j := min(m, n), max(m, n)
	c := make([]float64, k*j+1)
	c[0] = 1
	for i := 1; i <= k; i++ {
		deg := i * j // degree of the partial product after this factor
		for d := deg; d >= j+i; d-- {
			c[d] -= c[d-j-i]
		}
		for d := i; d <= deg; d++ {
			c[d] += c[d-i]
		}
	}
	var total, tail float64
	from := int(math.Ceil(u - 1e-9))
	for d, v := range c {
		total += v
		if d >= from {
			tail += v
		}
	}
	return math.Min(1, math.Max(tail/total, 0))
}

// pUpper is the one-sided p-value of a standard normal z.
func pUpper(z float64) float64 {
	if math.IsNaN(z) {
		return math.NaN()
	}
	return 0.5 * math.Erfc(z/math.Sqrt2)
}

// mannWhitneyZ returns U for x, the continuity-corrected z of "x is
// greater" (-Inf when every value is tied, so that p is 1) and whether any
// values are tied.
func mannWhitneyZ(x, y []float64) (u, z float64, ties bool) {
	nx, ny := len(x), len(y)
	if nx == 0 || ny == 0 {
		return math.NaN(), math.NaN(), false
	}
	type obs struct {
		v     float64
		fromX bool
	}
	all := make([]obs, 0, nx+ny)
	for _, v := range x {
		all = append(all, obs{v, true})
	}
	for _, v := range y {
		all = append(all, obs{v, false})
	}
	slices.SortStableFunc(all, func(a, b obs) int {
		switch {
		case a.v < b.v:
			return -1
		case a.v > b.v:
			return 1
		}
		return 0
	})
	n := float64(nx + ny)
	var rx, tieSum float64
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].v == all[i].v {
			j++
		}
		// Ranks i+1..j share their average.
		avg := float64(i+1+j) / 2
		t := float64(j - i)
		tieSum += t*t*t - t
		for k := i; k < j; k++ {
			if all[k].fromX {
				rx += avg
			}
		}
		i = j
	}
	fx, fy := float64(nx), float64(ny)
	u = rx - fx*(fx+1)/2
	mean := fx * fy / 2
	variance := fx * fy / 12 * ((n + 1) - tieSum/(n*(n-1)))
	if variance <= 0 {
		return u, math.Inf(-1), true // everything tied: no evidence either way (p = 1)
	}
	return u, (u - mean - 0.5) / math.Sqrt(variance), tieSum > 0
}
