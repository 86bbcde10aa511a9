package grafanatest

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestAnnotationEvents(t *testing.T) {
	const minute = int64(60_000)
	steps := func(n int, v func(i int) float64) []Point {
		var ps []Point
		for i := range n {
			ps = append(ps, Point{T: int64(i) * minute, V: v(i)})
		}
		return ps
	}
	ls := map[string]string{"alertname": "HighErrors", "severity": "page", "version": "v2"}
	for _, tc := range []struct {
		name string
		a    Annotation
		s    []Point
		want []Event
	}{
		{"a series at 1 for ten steps is one region", Annotation{TitleFormat: "{{alertname}}"},
			steps(10, func(int) float64 { return 1 }),
			[]Event{{Title: "HighErrors", Time: 0, TimeEnd: 9 * minute}}},
		{"a gap longer than the step splits it", Annotation{TitleFormat: "{{alertname}}"},
			steps(6, func(i int) float64 { return float64(1 - i/2%2) }),
			[]Event{{Title: "HighErrors", Time: 0, TimeEnd: minute}, {Title: "HighErrors", Time: 4 * minute, TimeEnd: 5 * minute}}},
		{"a constant value used for time is one marker", Annotation{TitleFormat: "Verdict {{version}}", UseValueForTime: true, TagKeys: []string{"version", "nope"}},
			steps(10, func(int) float64 { return 123_456 }),
			[]Event{{Title: "Verdict v2", Tags: []string{"v2"}, Time: 123_456, TimeEnd: 123_456}}},
		{"a value that moves with each step is a region", Annotation{UseValueForTime: true},
			steps(5, func(i int) float64 { return float64(int64(i) * minute) }),
			[]Event{{Time: 0, TimeEnd: 4 * minute}}},
		{"one that moves further than the step is a marker each", Annotation{UseValueForTime: true, Step: 30 * time.Second},
			steps(3, func(i int) float64 { return float64(int64(i) * minute) }),
			[]Event{{Time: 0, TimeEnd: 0}, {Time: minute, TimeEnd: minute}, {Time: 2 * minute, TimeEnd: 2 * minute}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := AnnotationEvents(tc.a, []Series{{Labels: ls, Points: tc.s}})
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	at := time.Unix(1700000000, 0)
	info := TableFrame("A", at, []Sample{
		{Labels: map[string]string{"service": "checkout", "version": "v3", "previous_version": "v2"}, Value: 1},
	})
	started := TableFrame("B", at, []Sample{
		{Labels: map[string]string{"service": "checkout", "version": "v3"}, Value: 300},
		{Labels: map[string]string{"service": "checkout", "version": "v2"}, Value: 100},
	})
	verdicts := TableFrame("C", at, []Sample{
		{Labels: map[string]string{"service": "checkout", "version": "v3", "decision": "promote"}, Value: 0.9},
	})
	got := Merge(info, started, verdicts, Frame{})
	var rows []string
	for _, r := range got {
		rows = append(rows, fmt.Sprintf("%v %v %v %v %v %v", r["version"], r["previous_version"], r["Value #A"], r["Value #B"], r["decision"], r["Value #C"]))
	}
	// The start of v2, which v3 replaced, is a row of its own: the bug of
	// a deployments table that does not join every query with the
	// current deployment.
	want := []string{"v3 v2 1 300 promote 0.9", "v2 <nil> <nil> 100 <nil> <nil>"}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("merged rows (-want +got):\n%s", diff)
	}
	if got := Merge(Frame{}, Frame{}); got != nil {
		t.Errorf("merge of empty frames = %v", got)
	}
}
