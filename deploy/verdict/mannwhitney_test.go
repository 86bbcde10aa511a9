package verdict

import (
	"math"
	"math/bits"
	"testing"
)

func TestMannWhitney(t *testing.T) {
	tests := []struct {
		name string
		x, y []float64
		u, p float64
	}{
		// No ties: exact. U = 9 of 9 is one ordering of C(6,3) = 20.
		{"x entirely above y", []float64{4, 5, 6}, []float64{1, 2, 3}, 9, 0.05},
		{"x entirely below y", []float64{1, 2, 3}, []float64{4, 5, 6}, 0, 1},
		// U = 8: two orderings of 20 give U >= 8.
		{"one pair out of order", []float64{3, 5, 6}, []float64{1, 2, 4}, 8, 0.1},
		// 4 samples above 80: 1 / C(84,4).
		{"a few canary samples above many", []float64{101, 102, 103, 104}, seq(80), 320, 1.0 / 1929501},
		// Ranks 1, 3.5 x4, 6: Rx = 13, U = 7; tie term 4^3-4 = 60, variance 0.75*(7-60/30) = 3.75.
		{"ties averaged and corrected", []float64{2, 2, 3}, []float64{1, 2, 2}, 7, 0.150849},
		{"all tied", []float64{1, 1}, []float64{1, 1, 1}, 3, 1},
		{"order does not matter", []float64{6, 4, 5}, []float64{3, 1, 2}, 9, 0.05},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, p := MannWhitney(tc.x, tc.y)
			if u != tc.u || math.Abs(p-tc.p) > 1e-5*math.Max(tc.p, 1e-3) {
				t.Errorf("U, p = %v, %.6f; want %v, %.6f", u, p, tc.u, tc.p)
			}
		})
	}
	if u, p := MannWhitney(nil, []float64{1}); !math.IsNaN(u) || !math.IsNaN(p) {
		t.Errorf("empty sample: got %v %v, want NaN", u, p)
	}
}

func seq(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = float64(i)
	}
	return out
}

// TestMannWhitneyExact checks the exact distribution against counting every
// way of splitting m+n distinct ranks into the two samples.
func TestMannWhitneyExact(t *testing.T) {
	for _, size := range [][2]int{{1, 1}, {2, 5}, {4, 5}, {5, 4}, {6, 7}, {3, 10}} {
		m, n := size[0], size[1]
		counts := make([]float64, m*n+1) // orderings with each U
		var total float64
		for mask := 0; mask < 1<<(m+n); mask++ {
			if bits.OnesCount(uint(mask)) != m {
				continue
			}
			// x holds the ranks whose bit is set; U counts (x, y) pairs with x above y.
			u, ys := 0, 0
			for r := range m + n {
				if mask&(1<<r) != 0 {
					u += ys
				} else {
					ys++
				}
			}
			counts[u]++
			total++
		}
		var tail float64
		for u := m * n; u >= 0; u-- {
			tail += counts[u]
			if got, want := mannWhitneyExactUpper(float64(u), m, n), tail/total; math.Abs(got-want) > 1e-12 {
				t.Fatalf("m=%d n=%d: P(U >= %d) = %v, want %v", m, n, u, got, want)
			}
		}
	}
	// Large samples: close to the normal approximation.
	x, y := make([]float64, 40), make([]float64, 60)
	for i := range x {
		x[i] = float64(2*i) + 0.5 // interleaved with y, shifted up
	}
	for i := range y {
		y[i] = float64(i)
	}
	u, z, _ := mannWhitneyZ(x, y)
	if exact, normal := mannWhitneyExactUpper(u, 40, 60), pUpper(z); math.Abs(exact-normal) > 0.01 {
		t.Errorf("U=%v: exact %v, normal %v: want within 0.01", u, exact, normal)
	}
}

func BenchmarkMannWhitney(b *testing.B) {
	x, y := make([]float64, 40), make([]float64, 200)
	for i := range x {
		x[i] = float64(i%7) * 1.1
	}
	for i := range y {
		y[i] = float64(i % 5)
	}
	for b.Loop() {
		MannWhitney(x, y)
	}
}
