package verdict

import (
	"math"
	"slices"
)

// MannWhitney tests whether x tends to be larger than y (one-sided) with the
// Mann-Whitney U test: the normal approximation with a tie correction and a
// continuity correction, which is what Kayenta's classifier relies on. It
// returns U for x and the one-sided p-value of "x is stochastically greater
// than y". With no variation at all (every value tied) p is 1 when the
// samples are equal in rank terms. It needs at least one value on each side.
func MannWhitney(x, y []float64) (u, p float64) {
	u, z := mannWhitneyZ(x, y)
	return u, pUpper(z)
}

// pUpper is the one-sided p-value of a standard normal z.
func pUpper(z float64) float64 {
	if math.IsNaN(z) {
		return math.NaN()
	}
	return 0.5 * math.Erfc(z/math.Sqrt2)
}

// mannWhitneyZ returns U for x and the continuity-corrected z of "x is
// greater" (-Inf when every value is tied, so that p is 1).
func mannWhitneyZ(x, y []float64) (u, z float64) {
	nx, ny := len(x), len(y)
	if nx == 0 || ny == 0 {
		return math.NaN(), math.NaN()
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
		return u, math.Inf(-1) // everything tied: no evidence either way (p = 1)
	}
	return u, (u - mean - 0.5) / math.Sqrt(variance)
}
