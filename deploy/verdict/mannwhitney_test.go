package verdict

import (
	"math"
	"testing"
)

func TestMannWhitney(t *testing.T) {
	tests := []struct {
		name string
		x, y []float64
		u, p float64
	}{
		// U = 9 of 9, mean 4.5, variance 3*3*7/12: z = 4/sqrt(5.25).
		{"x entirely above y", []float64{4, 5, 6}, []float64{1, 2, 3}, 9, 0.040424},
		{"x entirely below y", []float64{1, 2, 3}, []float64{4, 5, 6}, 0, 0.985452},
		// Ranks 1, 3.5 x4, 6: Rx = 13, U = 7; tie term 4^3-4 = 60, variance 0.75*(7-60/30) = 3.75.
		{"ties averaged and corrected", []float64{2, 2, 3}, []float64{1, 2, 2}, 7, 0.150849},
		{"all tied", []float64{1, 1}, []float64{1, 1, 1}, 3, 1},
		{"order does not matter", []float64{6, 4, 5}, []float64{3, 1, 2}, 9, 0.040424},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, p := MannWhitney(tc.x, tc.y)
			if u != tc.u || math.Abs(p-tc.p) > 1e-5 {
				t.Errorf("U, p = %v, %.6f; want %v, %.6f", u, p, tc.u, tc.p)
			}
		})
	}
	if u, p := MannWhitney(nil, []float64{1}); !math.IsNaN(u) || !math.IsNaN(p) {
		t.Errorf("empty sample: got %v %v, want NaN", u, p)
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
