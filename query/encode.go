package query

import (
	"net/http"
	"sort"

	jsoniter "github.com/json-iterator/go"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/util/jsonutil"
	"github.com/prometheus/prometheus/util/stats"
)

// The encoders write the Prometheus API's JSON shapes directly to a jsoniter
// stream, with Prometheus's own number formatting (util/jsonutil): sample
// values as strings ("NaN", "+Inf" included), timestamps as float seconds
// with millisecond precision.

var jsonAPI = jsoniter.ConfigCompatibleWithStandardLibrary

// writeEnvelope writes {"status":"success","data":<data>,"warnings":[...],"infos":[...]}.
func writeSuccess(w http.ResponseWriter, warnings, infos []string, data func(s *jsoniter.Stream)) {
	w.Header().Set("Content-Type", "application/json")
	s := jsonAPI.BorrowStream(w)
	defer jsonAPI.ReturnStream(s)
	s.WriteObjectStart()
	s.WriteObjectField("status")
	s.WriteString("success")
	s.WriteMore()
	s.WriteObjectField("data")
	data(s)
	if len(warnings) > 0 {
		s.WriteMore()
		s.WriteObjectField("warnings")
		writeStrings(s, warnings)
	}
	if len(infos) > 0 {
		s.WriteMore()
		s.WriteObjectField("infos")
		writeStrings(s, infos)
	}
	s.WriteObjectEnd()
	s.WriteRaw("\n")
	_ = s.Flush()
}

func writeStrings(s *jsoniter.Stream, ss []string) {
	s.WriteArrayStart()
	for i, v := range ss {
		if i > 0 {
			s.WriteMore()
		}
		s.WriteString(v)
	}
	s.WriteArrayEnd()
}

func writeLabels(s *jsoniter.Stream, ls labels.Labels) {
	s.WriteObjectStart()
	first := true
	ls.Range(func(l labels.Label) {
		if !first {
			s.WriteMore()
		}
		first = false
		s.WriteObjectField(l.Name)
		s.WriteString(l.Value)
	})
	s.WriteObjectEnd()
}

func writeFPoint(s *jsoniter.Stream, t int64, v float64) {
	s.WriteArrayStart()
	jsonutil.MarshalTimestamp(t, s)
	s.WriteMore()
	jsonutil.MarshalFloat(v, s)
	s.WriteArrayEnd()
}

func writeHPoint(s *jsoniter.Stream, p promql.HPoint) {
	s.WriteArrayStart()
	jsonutil.MarshalTimestamp(p.T, s)
	s.WriteMore()
	jsonutil.MarshalHistogram(p.H, s)
	s.WriteArrayEnd()
}

// writeValue writes a PromQL result value as {"resultType": ..., "result": ...}.
func writeQueryData(s *jsoniter.Stream, v parser.Value, qs *stats.QueryStats) {
	s.WriteObjectStart()
	s.WriteObjectField("resultType")
	s.WriteString(string(v.Type()))
	s.WriteMore()
	s.WriteObjectField("result")
	switch val := v.(type) {
	case promql.Vector:
		writeVector(s, val)
	case promql.Matrix:
		writeMatrix(s, val)
	case promql.Scalar:
		writeFPoint(s, val.T, val.V)
	case promql.String:
		s.WriteArrayStart()
		jsonutil.MarshalTimestamp(val.T, s)
		s.WriteMore()
		s.WriteString(val.V)
		s.WriteArrayEnd()
	default:
		s.WriteNil()
	}
	if qs != nil {
		s.WriteMore()
		s.WriteObjectField("stats")
		s.WriteVal(qs)
	}
	s.WriteObjectEnd()
}

func writeVector(s *jsoniter.Stream, v promql.Vector) {
	s.WriteArrayStart()
	for i, smp := range v {
		if i > 0 {
			s.WriteMore()
		}
		s.WriteObjectStart()
		s.WriteObjectField("metric")
		writeLabels(s, smp.Metric)
		s.WriteMore()
		if smp.H != nil {
			s.WriteObjectField("histogram")
			writeHPoint(s, promql.HPoint{T: smp.T, H: smp.H})
		} else {
			s.WriteObjectField("value")
			writeFPoint(s, smp.T, smp.F)
		}
		s.WriteObjectEnd()
	}
	s.WriteArrayEnd()
}

func writeMatrix(s *jsoniter.Stream, m promql.Matrix) {
	s.WriteArrayStart()
	for i, series := range m {
		if i > 0 {
			s.WriteMore()
		}
		s.WriteObjectStart()
		s.WriteObjectField("metric")
		writeLabels(s, series.Metric)
		if len(series.Floats) > 0 {
			s.WriteMore()
			s.WriteObjectField("values")
			s.WriteArrayStart()
			for j, p := range series.Floats {
				if j > 0 {
					s.WriteMore()
				}
				writeFPoint(s, p.T, p.F)
			}
			s.WriteArrayEnd()
		}
		if len(series.Histograms) > 0 {
			s.WriteMore()
			s.WriteObjectField("histograms")
			s.WriteArrayStart()
			for j, p := range series.Histograms {
				if j > 0 {
					s.WriteMore()
				}
				writeHPoint(s, p)
			}
			s.WriteArrayEnd()
		}
		s.WriteObjectEnd()
	}
	s.WriteArrayEnd()
}

func writeLabelSets(s *jsoniter.Stream, sets []labels.Labels) {
	s.WriteArrayStart()
	for i, ls := range sets {
		if i > 0 {
			s.WriteMore()
		}
		writeLabels(s, ls)
	}
	s.WriteArrayEnd()
}

func writeExemplars(s *jsoniter.Stream, res []exemplar.QueryResult) {
	s.WriteArrayStart()
	for i, r := range res {
		if i > 0 {
			s.WriteMore()
		}
		s.WriteObjectStart()
		s.WriteObjectField("seriesLabels")
		writeLabels(s, r.SeriesLabels)
		s.WriteMore()
		s.WriteObjectField("exemplars")
		s.WriteArrayStart()
		for j, e := range r.Exemplars {
			if j > 0 {
				s.WriteMore()
			}
			s.WriteObjectStart()
			s.WriteObjectField("labels")
			writeLabels(s, e.Labels)
			s.WriteMore()
			s.WriteObjectField("value")
			jsonutil.MarshalFloat(e.Value, s)
			s.WriteMore()
			s.WriteObjectField("timestamp")
			jsonutil.MarshalTimestamp(e.Ts, s)
			s.WriteObjectEnd()
		}
		s.WriteArrayEnd()
		s.WriteObjectEnd()
	}
	s.WriteArrayEnd()
}

func writeMetadata(s *jsoniter.Stream, md map[string][]metadata.Metadata) {
	names := make([]string, 0, len(md))
	for name := range md {
		names = append(names, name)
	}
	sort.Strings(names)
	s.WriteObjectStart()
	for i, name := range names {
		if i > 0 {
			s.WriteMore()
		}
		s.WriteObjectField(name)
		s.WriteArrayStart()
		for j, m := range md[name] {
			if j > 0 {
				s.WriteMore()
			}
			s.WriteObjectStart()
			s.WriteObjectField("type")
			s.WriteString(string(m.Type))
			s.WriteMore()
			s.WriteObjectField("help")
			s.WriteString(m.Help)
			s.WriteMore()
			s.WriteObjectField("unit")
			s.WriteString(m.Unit)
			s.WriteObjectEnd()
		}
		s.WriteArrayEnd()
	}
	s.WriteObjectEnd()
}
