package collector

import (
	"strconv"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// tooDeepValue stands for a value that nests deeper than MaxAnyValueDepth.
var tooDeepValue = "<value nested deeper than " + strconv.Itoa(MaxAnyValueDepth) + " levels>"

// ValueString renders an OTLP attribute or log body as text, as
// pcommon.Value.AsString does (maps and slices as JSON), except that a
// value nesting maps and slices deeper than MaxAnyValueDepth is rendered
// as a placeholder: AsString recurses once per level, and a deep enough
// value overflows the stack. Receivers refuse such values before decoding;
// this bound holds for values that come from anywhere else.
func ValueString(v pcommon.Value) string {
	switch v.Type() {
	case pcommon.ValueTypeMap, pcommon.ValueTypeSlice:
		if !withinDepth(v, MaxAnyValueDepth) {
			return tooDeepValue
		}
	}
	return v.AsString()
}

// withinDepth reports whether v nests maps and slices at most limit
// levels deep. It walks iteratively, with its own stack.
func withinDepth(v pcommon.Value, limit int) bool {
	type entry struct {
		v     pcommon.Value
		level int
	}
	stack := []entry{{v, 1}}
	for len(stack) > 0 {
		e := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if e.level > limit {
			return false
		}
		push := func(c pcommon.Value) {
			if t := c.Type(); t == pcommon.ValueTypeMap || t == pcommon.ValueTypeSlice {
				stack = append(stack, entry{c, e.level + 1})
			}
		}
		switch e.v.Type() {
		case pcommon.ValueTypeMap:
			e.v.Map().Range(func(_ string, c pcommon.Value) bool {
				push(c)
				return true
			})
		case pcommon.ValueTypeSlice:
			s := e.v.Slice()
			for i := range s.Len() {
				push(s.At(i))
			}
		}
	}
	return true
}
