package verdict

import (
	"strings"
	"testing"
)

func TestSignalValidate(t *testing.T) {
	tests := []struct {
		name string
		sig  Signal
		err  string // empty: valid
	}{
		{"compare", Signal{Name: "q", Query: "max(queue_depth{$selector})"}, ""},
		{"ratio", Signal{Name: "f", Kind: KindRatio, Query: "sum(increase(f{$selector}[$step]))", Total: "sum(increase(a{$selector}[$step]))"}, ""},
		{"ratio without total", Signal{Name: "f", Kind: KindRatio, Query: "sum(f{$selector})"}, "needs total"},
		{"ratio with a bad total", Signal{Name: "f", Kind: KindRatio, Query: "sum(f{$selector})", Total: "sum(a{$selector}"}, "total"},
		{"ratio lower is worse", Signal{Name: "f", Kind: KindRatio, Query: "sum(f{$selector})", Total: "sum(a{$selector})", Direction: LowerIsWorse}, "count the failures"},
		{"total on a compare signal", Signal{Name: "q", Query: "sum(f{$selector})", Total: "sum(a{$selector})"}, "only for kind ratio"},
		{"presence on a compare signal", Signal{Name: "q", Query: "sum(f{$selector})", Presence: "sum(a{$selector})"}, "only for kind ratio"},
		{"ratio with presence", Signal{Name: "f", Kind: KindRatio, Query: "sum(f{$selector})", Total: "sum(a{$selector})", Presence: "sum(l{$selector})"}, ""},
		{"ratio with a bad presence", Signal{Name: "f", Kind: KindRatio, Query: "sum(f{$selector})", Total: "sum(a{$selector})", Presence: "sum(l{$selector}"}, "presence"},
		{"unknown kind", Signal{Name: "q", Kind: "histogram", Query: "sum(f{$selector})"}, "not compare, ratio, traffic or alert"},
		{"bad query", Signal{Name: "q", Query: "sum(f{$selector}"}, "query"},
		{"negative tolerance", Signal{Name: "q", Query: "f", Tolerance: -1}, "must not be negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.sig.Validate()
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("Validate() = %v, want %q", err, tc.err)
			}
		})
	}
	for _, s := range DefaultSignals() {
		if err := s.Validate(); err != nil {
			t.Errorf("default signal: %v", err)
		}
	}
}
