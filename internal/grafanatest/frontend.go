package grafanatest

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// What a dashboard shows is decided partly in Grafana's frontend, from the
// query results: how the Prometheus datasource turns a range query into
// annotation events, and how the "merge" transformation joins the tables of
// several instant queries. Grafana cannot run here, so these are written
// from how Grafana 12's frontend behaves (the Prometheus datasource's
// annotation support, the merge transformer), not from its code; the
// end-to-end tests feed them the answers of a real Vigil.

// ProvisioningDirs are the directories Grafana 12 reads under
// paths.provisioning (administration/provisioning). It logs an error at
// start for each one that is missing.
var ProvisioningDirs = []string{"datasources", "dashboards", "plugins", "alerting"}

// Annotation is what shapes the events of a Prometheus annotation query.
type Annotation struct {
	TitleFormat, TextFormat string
	// TagKeys are the labels whose values become the event's tags.
	TagKeys []string
	// UseValueForTime places an event at the sample's value (ms) instead
	// of its timestamp.
	UseValueForTime bool
	// Step is the query's step (60s when zero, Grafana's default).
	Step time.Duration
}

// Point is one sample of a range query result.
type Point struct {
	T int64 // ms
	V float64
}

// Series is one series of a range query result.
type Series struct {
	Labels map[string]string
	Points []Point
}

// Event is one annotation Grafana draws: a marker when Time == TimeEnd, a
// shaded region otherwise.
type Event struct {
	Title, Text   string
	Tags          []string
	Time, TimeEnd int64 // ms
}

// Region reports whether Grafana shades the event as a region.
func (e Event) Region() bool { return e.TimeEnd != e.Time }

// AnnotationEvents turns the result of an annotation's range query into
// Grafana's events. Per series, every sample with a value above zero is
// active (with UseValueForTime, every sample, at the time its value names);
// active times no more than one step apart, in the order the samples come,
// join into one event from the first to the last.
func AnnotationEvents(a Annotation, result []Series) []Event {
	step := a.Step
	if step == 0 {
		step = time.Minute
	}
	var out []Event
	for _, s := range result {
		var tags []string
		for _, k := range a.TagKeys {
			if v, ok := s.Labels[k]; ok {
				tags = append(tags, v)
			}
		}
		var cur *Event
		for _, p := range s.Points {
			t := p.T
			if a.UseValueForTime {
				t = int64(p.V)
			} else if !(p.V > 0) {
				continue
			}
			if cur != nil && cur.TimeEnd+step.Milliseconds() >= t {
				cur.TimeEnd = t
				continue
			}
			if cur != nil {
				out = append(out, *cur)
			}
			cur = &Event{Title: legend(a.TitleFormat, s.Labels), Text: legend(a.TextFormat, s.Labels), Tags: tags, Time: t, TimeEnd: t}
		}
		if cur != nil {
			out = append(out, *cur)
		}
	}
	return out
}

var legendRE = regexp.MustCompile(`\{\{\s*(.+?)\s*\}\}`)

// legend renders a legend format: {{label}} is the label's value, empty
// when the series has no such label.
func legend(format string, ls map[string]string) string {
	return legendRE.ReplaceAllStringFunc(format, func(m string) string {
		return ls[legendRE.FindStringSubmatch(m)[1]]
	})
}

// Frame is the table Grafana's Prometheus datasource makes of an instant
// query of format "table": a Time column, a column per label of any
// series, and the value as "Value #<refId>".
type Frame struct {
	Fields []string
	Rows   []map[string]any
}

// Sample is one series of an instant query result.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// TableFrame builds the frame of one instant query's result at t.
func TableFrame(refID string, t time.Time, result []Sample) Frame {
	if len(result) == 0 {
		return Frame{}
	}
	names := map[string]bool{}
	for _, s := range result {
		for k := range s.Labels {
			names[k] = true
		}
	}
	f := Frame{Fields: []string{"Time"}}
	for k := range names {
		f.Fields = append(f.Fields, k)
	}
	sort.Strings(f.Fields[1:])
	value := "Value #" + refID
	f.Fields = append(f.Fields, value)
	for _, s := range result {
		row := map[string]any{"Time": t.UnixMilli(), value: s.Value}
		for k := range names {
			row[k] = s.Labels[k]
		}
		f.Rows = append(f.Rows, row)
	}
	return f
}

// Merge is Grafana's "merge" transformation: the fields every (non-empty)
// frame has are the key; a row joins an earlier row of the same key when
// no field both have differs, and is a row of its own otherwise. Rows keep
// the order they first appear in.
func Merge(frames ...Frame) []map[string]any {
	var data []Frame
	for _, f := range frames {
		if len(f.Fields) > 0 {
			data = append(data, f)
		}
	}
	if len(data) == 0 {
		return nil
	}
	var key []string
	for _, name := range data[len(data)-1].Fields {
		inAll := true
		for _, f := range data {
			inAll = inAll && slices.Contains(f.Fields, name)
		}
		if inAll {
			key = append(key, name)
		}
	}
	byKey := map[string][]map[string]any{}
	var order []struct {
		key string
		i   int
	}
	for _, f := range data {
		for _, row := range f.Rows {
			var kb strings.Builder
			for _, k := range key {
				fmt.Fprintf(&kb, "%v\xff", row[k])
			}
			k := kb.String()
			merged := false
			for _, existing := range byKey[k] {
				if mergeable(existing, row) {
					for n, v := range row {
						existing[n] = v
					}
					merged = true
				}
			}
			if !merged {
				r := map[string]any{}
				for n, v := range row {
					r[n] = v
				}
				byKey[k] = append(byKey[k], r)
				order = append(order, struct {
					key string
					i   int
				}{k, len(byKey[k]) - 1})
			}
		}
	}
	out := make([]map[string]any, 0, len(order))
	for _, o := range order {
		out = append(out, byKey[o.key][o.i])
	}
	return out
}

func mergeable(existing, row map[string]any) bool {
	for n, v := range row {
		if e, ok := existing[n]; ok && e != nil && e != v {
			return false
		}
	}
	return true
}
