package collector

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

func TestValueString(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fill   func(pcommon.Value)
		want   string
		legacy bool // the same as pcommon's AsString
	}{
		{"string", func(v pcommon.Value) { v.SetStr("checkout") }, "checkout", true},
		{"int", func(v pcommon.Value) { v.SetInt(42) }, "42", true},
		{"bool", func(v pcommon.Value) { v.SetBool(true) }, "true", true},
		{"empty", func(pcommon.Value) {}, "", true},
		{"map", func(v pcommon.Value) { v.SetEmptyMap().PutStr("b", "2"); v.Map().PutInt("a", 1) }, `{"a":1,"b":"2"}`, true},
		{"64 levels", func(v pcommon.Value) { nest(v, MaxAnyValueDepth, false) }, "", true},
		{"65 levels", func(v pcommon.Value) { nest(v, MaxAnyValueDepth+1, true) }, "<value nested deeper than 64 levels>", false},
		{"100,000 levels", func(v pcommon.Value) { nest(v, 100_000, false) }, "<value nested deeper than 64 levels>", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := pcommon.NewValueEmpty()
			tc.fill(v)
			got := ValueString(v)
			if tc.legacy {
				tc.want = v.AsString()
			}
			if got != tc.want {
				t.Errorf("ValueString = %.80q, want %.80q", got, tc.want)
			}
		})
	}
}
