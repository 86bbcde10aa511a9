package collector

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

var update = flag.Bool("update", false, "rewrite the fuzz seed corpora in testdata/")

// nest makes v a value of levels nested slices (or maps) around a string.
func nest(v pcommon.Value, levels int, maps bool) {
	for range levels {
		if maps {
			v = v.SetEmptyMap().PutEmpty("k")
		} else {
			v = v.SetEmptySlice().AppendEmpty()
		}
	}
	v.SetStr("leaf")
}

// request is an OTLP export request in both encodings.
type request struct {
	signal      OTLPSignal
	proto, json []byte
}

func exportMetrics(t testing.TB, md pmetric.Metrics) request {
	t.Helper()
	er := pmetricotlp.NewExportRequestFromMetrics(md)
	p, err := er.MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	j, err := er.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return request{OTLPMetrics, p, j}
}

func exportTraces(t testing.TB, td ptrace.Traces) request {
	t.Helper()
	er := ptraceotlp.NewExportRequestFromTraces(td)
	p, err := er.MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	j, err := er.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return request{OTLPTraces, p, j}
}

func exportLogs(t testing.TB, ld plog.Logs) request {
	t.Helper()
	er := plogotlp.NewExportRequestFromLogs(ld)
	p, err := er.MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	j, err := er.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return request{OTLPLogs, p, j}
}

// valuePlaces builds, for every place an OTLP request can carry a value,
// a request whose value at that place is set by fill.
var valuePlaces = []struct {
	name  string
	build func(t testing.TB, fill func(pcommon.Value)) request
}{
	{"resource attribute (traces)", func(t testing.TB, fill func(pcommon.Value)) request {
		td := ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty()
		fill(rs.Resource().Attributes().PutEmpty("service.name"))
		rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName("GET /")
		return exportTraces(t, td)
	}},
	{"scope attribute", func(t testing.TB, fill func(pcommon.Value)) request {
		td := ptrace.NewTraces()
		ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
		fill(ss.Scope().Attributes().PutEmpty("a"))
		return exportTraces(t, td)
	}},
	{"span attribute", func(t testing.TB, fill func(pcommon.Value)) request {
		td := ptrace.NewTraces()
		fill(td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty().Attributes().PutEmpty("a"))
		return exportTraces(t, td)
	}},
	{"span event attribute", func(t testing.TB, fill func(pcommon.Value)) request {
		td := ptrace.NewTraces()
		sp := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		fill(sp.Events().AppendEmpty().Attributes().PutEmpty("a"))
		return exportTraces(t, td)
	}},
	{"span link attribute", func(t testing.TB, fill func(pcommon.Value)) request {
		td := ptrace.NewTraces()
		sp := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		fill(sp.Links().AppendEmpty().Attributes().PutEmpty("a"))
		return exportTraces(t, td)
	}},
	{"log body", func(t testing.TB, fill func(pcommon.Value)) request {
		ld := plog.NewLogs()
		fill(ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body())
		return exportLogs(t, ld)
	}},
	{"log attribute", func(t testing.TB, fill func(pcommon.Value)) request {
		ld := plog.NewLogs()
		fill(ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Attributes().PutEmpty("a"))
		return exportLogs(t, ld)
	}},
	{"resource attribute (logs)", func(t testing.TB, fill func(pcommon.Value)) request {
		ld := plog.NewLogs()
		fill(ld.ResourceLogs().AppendEmpty().Resource().Attributes().PutEmpty("service.name"))
		return exportLogs(t, ld)
	}},
	{"resource attribute (metrics)", func(t testing.TB, fill func(pcommon.Value)) request {
		md := pmetric.NewMetrics()
		fill(md.ResourceMetrics().AppendEmpty().Resource().Attributes().PutEmpty("service.name"))
		return exportMetrics(t, md)
	}},
	{"metric metadata", func(t testing.TB, fill func(pcommon.Value)) request {
		md := pmetric.NewMetrics()
		m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetEmptyGauge()
		fill(m.Metadata().PutEmpty("a"))
		return exportMetrics(t, md)
	}},
	{"gauge point attribute", func(t testing.TB, fill func(pcommon.Value)) request {
		md := pmetric.NewMetrics()
		m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		fill(m.SetEmptyGauge().DataPoints().AppendEmpty().Attributes().PutEmpty("a"))
		return exportMetrics(t, md)
	}},
	{"sum point exemplar attribute", func(t testing.TB, fill func(pcommon.Value)) request {
		md := pmetric.NewMetrics()
		m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		fill(m.SetEmptySum().DataPoints().AppendEmpty().Exemplars().AppendEmpty().FilteredAttributes().PutEmpty("a"))
		return exportMetrics(t, md)
	}},
	{"histogram point attribute", func(t testing.TB, fill func(pcommon.Value)) request {
		md := pmetric.NewMetrics()
		m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		fill(m.SetEmptyHistogram().DataPoints().AppendEmpty().Attributes().PutEmpty("a"))
		return exportMetrics(t, md)
	}},
	{"histogram exemplar attribute", func(t testing.TB, fill func(pcommon.Value)) request {
		md := pmetric.NewMetrics()
		m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		fill(m.SetEmptyHistogram().DataPoints().AppendEmpty().Exemplars().AppendEmpty().FilteredAttributes().PutEmpty("a"))
		return exportMetrics(t, md)
	}},
	{"exponential histogram point attribute", func(t testing.TB, fill func(pcommon.Value)) request {
		md := pmetric.NewMetrics()
		m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		fill(m.SetEmptyExponentialHistogram().DataPoints().AppendEmpty().Attributes().PutEmpty("a"))
		return exportMetrics(t, md)
	}},
	{"exponential histogram exemplar attribute", func(t testing.TB, fill func(pcommon.Value)) request {
		md := pmetric.NewMetrics()
		m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		fill(m.SetEmptyExponentialHistogram().DataPoints().AppendEmpty().Exemplars().AppendEmpty().FilteredAttributes().PutEmpty("a"))
		return exportMetrics(t, md)
	}},
	{"summary point attribute", func(t testing.TB, fill func(pcommon.Value)) request {
		md := pmetric.NewMetrics()
		m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		fill(m.SetEmptySummary().DataPoints().AppendEmpty().Attributes().PutEmpty("a"))
		return exportMetrics(t, md)
	}},
	{"scope attribute (metrics)", func(t testing.TB, fill func(pcommon.Value)) request {
		md := pmetric.NewMetrics()
		fill(md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Scope().Attributes().PutEmpty("a"))
		return exportMetrics(t, md)
	}},
}

// TestCheckOTLPDepth: a value nesting MaxAnyValueDepth levels passes and
// one level more is refused, in every place a value can sit, in both
// encodings, whether it nests arrays or key-value lists.
func TestCheckOTLPDepth(t *testing.T) {
	for _, place := range valuePlaces {
		for _, maps := range []bool{false, true} {
			for _, tc := range []struct {
				levels  int
				tooDeep bool
			}{{0, false}, {1, false}, {MaxAnyValueDepth, false}, {MaxAnyValueDepth + 1, true}, {1000, true}} {
				name := fmt.Sprintf("%s/maps=%v/%d levels", place.name, maps, tc.levels)
				t.Run(name, func(t *testing.T) {
					req := place.build(t, func(v pcommon.Value) { nest(v, tc.levels, maps) })
					for enc, err := range map[string]error{
						"protobuf": CheckOTLPProtoDepth(req.proto, req.signal),
						"JSON":     CheckOTLPJSONDepth(req.json),
					} {
						var de *DepthError
						if tc.tooDeep != errors.As(err, &de) {
							t.Errorf("%s: got %v, want too deep: %v", enc, err, tc.tooDeep)
						}
						if tc.tooDeep && !strings.Contains(err.Error(), "limit of 64 levels") {
							t.Errorf("%s: message %q does not name the limit", enc, err)
						}
					}
				})
			}
		}
	}
}

func TestCheckJSONDepth(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, tc := range []struct {
		name    string
		json    string
		max     int
		tooDeep bool
	}{
		{"flat", `{"a":1}`, 1, false},
		{"at the limit", deep(32), 32, false},
		{"one past", deep(33), 32, true},
		{"brackets in strings do not count", `{"a":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}`, 2, false},
		{"escaped quotes in strings", `{"a":"\"[[[[[[[[[[[[[[\\"}`, 2, false},
		{"malformed is left to the decoder", `]]]]{{{`, 2, false},
		{"unterminated string", `{"a":"[[[[`, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckJSONDepth([]byte(tc.json), tc.max)
			if (err != nil) != tc.tooDeep {
				t.Errorf("got %v, want too deep: %v", err, tc.tooDeep)
			}
		})
	}
}

// TestCheckOTLPJSONDepthKeys: the value levels are counted under every
// spelling pdata accepts, escaped or not, and nowhere else.
func TestCheckOTLPJSONDepthKeys(t *testing.T) {
	body := func(arrayKey string, levels int) []byte {
		v := strings.Repeat(`{"`+arrayKey+`":{"values":[`, levels) + `{"stringValue":"x"}` + strings.Repeat(`]}}`, levels)
		return []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":` + v + `}]}]}]}`)
	}
	for _, key := range []string{"arrayValue", "array_value", `array\u0056alue`} {
		if err := CheckOTLPJSONDepth(body(key, MaxAnyValueDepth)); err != nil {
			t.Errorf("%s, %d levels: %v", key, MaxAnyValueDepth, err)
		}
		if err := CheckOTLPJSONDepth(body(key, MaxAnyValueDepth+1)); err == nil || !strings.Contains(err.Error(), "attribute or log body values") {
			t.Errorf("%s, %d levels: got %v, want the value limit", key, MaxAnyValueDepth+1, err)
		}
	}
	// Another key nesting as deep is bounded by the bracket limit only.
	if err := CheckOTLPJSONDepth(body("unknownField", MaxAnyValueDepth+1)); err != nil {
		t.Errorf("unknown field: %v", err)
	}
	if err := CheckOTLPJSONDepth(body("unknownField", 100)); err == nil || !strings.Contains(err.Error(), "JSON objects and arrays") {
		t.Errorf("unknown field nesting 300 brackets: got %v, want the bracket limit", err)
	}
}

// TestCheckOTLPProtoDepthMalformed: truncated or corrupt input is not the
// scanner's to refuse; it returns without error and reads nothing past the end.
func TestCheckOTLPProtoDepthMalformed(t *testing.T) {
	req := valuePlaces[5].build(t, func(v pcommon.Value) { nest(v, 3, false) })
	for i := range len(req.proto) {
		if err := CheckOTLPProtoDepth(req.proto[:i], req.signal); err != nil {
			t.Fatalf("prefix of %d bytes: %v", i, err)
		}
	}
	if err := CheckOTLPProtoDepth([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}, OTLPLogs); err != nil {
		t.Fatal(err)
	}
	if err := CheckOTLPProtoDepth(nil, OTLPSignal(7)); err == nil {
		t.Fatal("an unknown signal was accepted")
	}
}

// maxDepth is the deepest nesting of any value in a decoded request, the
// reference the scanners are held to.
func maxDepth(signal OTLPSignal, proto []byte, json bool) (int, bool) {
	deepest := 0
	value := func(v pcommon.Value) {
		for d := 1; d <= 4*MaxAnyValueDepth; d++ {
			if withinDepth(v, d) {
				if t := v.Type(); t == pcommon.ValueTypeMap || t == pcommon.ValueTypeSlice {
					deepest = max(deepest, d)
				}
				return
			}
		}
		deepest = 4*MaxAnyValueDepth + 1
	}
	attrs := func(m pcommon.Map) {
		m.Range(func(_ string, v pcommon.Value) bool { value(v); return true })
	}
	switch signal {
	case OTLPMetrics:
		er := pmetricotlp.NewExportRequest()
		if err := unmarshal(json, proto, er.UnmarshalJSON, er.UnmarshalProto); err != nil {
			return 0, false
		}
		rms := er.Metrics().ResourceMetrics()
		for i := range rms.Len() {
			attrs(rms.At(i).Resource().Attributes())
			for j := range rms.At(i).ScopeMetrics().Len() {
				sm := rms.At(i).ScopeMetrics().At(j)
				attrs(sm.Scope().Attributes())
				for k := range sm.Metrics().Len() {
					m := sm.Metrics().At(k)
					attrs(m.Metadata())
					switch m.Type() {
					case pmetric.MetricTypeGauge:
						numberPoints(m.Gauge().DataPoints(), attrs)
					case pmetric.MetricTypeSum:
						numberPoints(m.Sum().DataPoints(), attrs)
					case pmetric.MetricTypeHistogram:
						for p := range m.Histogram().DataPoints().Len() {
							dp := m.Histogram().DataPoints().At(p)
							attrs(dp.Attributes())
							exemplars(dp.Exemplars(), attrs)
						}
					case pmetric.MetricTypeExponentialHistogram:
						for p := range m.ExponentialHistogram().DataPoints().Len() {
							dp := m.ExponentialHistogram().DataPoints().At(p)
							attrs(dp.Attributes())
							exemplars(dp.Exemplars(), attrs)
						}
					case pmetric.MetricTypeSummary:
						for p := range m.Summary().DataPoints().Len() {
							attrs(m.Summary().DataPoints().At(p).Attributes())
						}
					}
				}
			}
		}
	case OTLPTraces:
		er := ptraceotlp.NewExportRequest()
		if err := unmarshal(json, proto, er.UnmarshalJSON, er.UnmarshalProto); err != nil {
			return 0, false
		}
		rss := er.Traces().ResourceSpans()
		for i := range rss.Len() {
			attrs(rss.At(i).Resource().Attributes())
			for j := range rss.At(i).ScopeSpans().Len() {
				ss := rss.At(i).ScopeSpans().At(j)
				attrs(ss.Scope().Attributes())
				for k := range ss.Spans().Len() {
					sp := ss.Spans().At(k)
					attrs(sp.Attributes())
					for e := range sp.Events().Len() {
						attrs(sp.Events().At(e).Attributes())
					}
					for l := range sp.Links().Len() {
						attrs(sp.Links().At(l).Attributes())
					}
				}
			}
		}
	case OTLPLogs:
		er := plogotlp.NewExportRequest()
		if err := unmarshal(json, proto, er.UnmarshalJSON, er.UnmarshalProto); err != nil {
			return 0, false
		}
		rls := er.Logs().ResourceLogs()
		for i := range rls.Len() {
			attrs(rls.At(i).Resource().Attributes())
			for j := range rls.At(i).ScopeLogs().Len() {
				sl := rls.At(i).ScopeLogs().At(j)
				attrs(sl.Scope().Attributes())
				for k := range sl.LogRecords().Len() {
					lr := sl.LogRecords().At(k)
					value(lr.Body())
					attrs(lr.Attributes())
				}
			}
		}
	default:
		return 0, false
	}
	return deepest, true
}

func numberPoints(dps pmetric.NumberDataPointSlice, attrs func(pcommon.Map)) {
	for p := range dps.Len() {
		attrs(dps.At(p).Attributes())
		exemplars(dps.At(p).Exemplars(), attrs)
	}
}

func exemplars(es pmetric.ExemplarSlice, attrs func(pcommon.Map)) {
	for e := range es.Len() {
		attrs(es.At(e).FilteredAttributes())
	}
}

func unmarshal(json bool, b []byte, fromJSON, fromProto func([]byte) error) error {
	if json {
		return fromJSON(b)
	}
	return fromProto(b)
}

// FuzzCheckOTLPDepth holds the scanners to what pdata decodes: whenever a
// decoded request holds a value nesting deeper than MaxAnyValueDepth, the
// scanner of its encoding refused it, and the protobuf scanner refuses
// nothing else. The seed corpus in testdata/ holds requests nesting at
// the limit and past it in every encoding.
func FuzzCheckOTLPDepth(f *testing.F) {
	f.Fuzz(func(t *testing.T, signal uint8, json bool, body []byte) {
		s := OTLPSignal(signal % 3)
		var err error
		if json {
			err = CheckOTLPJSONDepth(body)
		} else {
			err = CheckOTLPProtoDepth(body, s)
		}
		depth, ok := maxDepth(s, body, json)
		if !ok {
			return // not a request pdata decodes
		}
		if depth > MaxAnyValueDepth && err == nil {
			t.Fatalf("a value nesting %d levels passed the scanner", depth)
		}
		if !json && depth <= MaxAnyValueDepth && err != nil {
			t.Fatalf("a request nesting %d levels was refused: %v", depth, err)
		}
	})
}

// FuzzCheckJSONDepth: the bracket scanner never refuses what nests within
// the limit (as encoding/json counts it) and never reads out of bounds.
func FuzzCheckJSONDepth(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte, limit uint8) {
		_ = CheckJSONDepth(body, int(limit))
		_ = CheckOTLPJSONDepth(body)
	})
}

// TestWriteFuzzSeeds writes the seed corpora of the fuzz targets above
// (run with -update after changing the generators).
func TestWriteFuzzSeeds(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite the seed corpora")
	}
	writeSeeds(t, "FuzzCheckOTLPDepth", func(add func(name string, args ...any)) {
		for i, place := range []int{0, 5, 10, 13} {
			for _, levels := range []int{MaxAnyValueDepth, MaxAnyValueDepth + 1, 300} {
				req := valuePlaces[place].build(t, func(v pcommon.Value) { nest(v, levels, levels%2 == 0) })
				add(fmt.Sprintf("place%d_%d_proto", i, levels), uint8(req.signal), false, req.proto)
				add(fmt.Sprintf("place%d_%d_json", i, levels), uint8(req.signal), true, req.json)
			}
		}
	})
	writeSeeds(t, "FuzzCheckJSONDepth", func(add func(name string, args ...any)) {
		add("deep_arrays", []byte(strings.Repeat("[", 400)+strings.Repeat("]", 400)), uint8(32))
		add("strings", []byte(`{"a":"[[[[\"]]]]","b":[[[1]]]}`), uint8(3))
		add("deep_kvlist", []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":`+strings.Repeat(`{"kvlistValue":{"values":[{"key":"k","value":`, 70)+`{"intValue":"1"}`+strings.Repeat(`}]}}`, 70)+`}]}]}]}`), uint8(255))
	})
}

func writeSeeds(t *testing.T, target string, gen func(add func(name string, args ...any))) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	gen(func(name string, args ...any) {
		var sb strings.Builder
		sb.WriteString("go test fuzz v1\n")
		for _, a := range args {
			switch v := a.(type) {
			case []byte:
				fmt.Fprintf(&sb, "[]byte(%q)\n", v)
			case uint8:
				fmt.Fprintf(&sb, "byte(%q)\n", v)
			case bool:
				fmt.Fprintf(&sb, "bool(%v)\n", v)
			default:
				t.Fatalf("seed argument of type %T", a)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	})
}

// BenchmarkDepthCheck compares the nesting pre-scan of an OTLP metrics
// request (1,000 data points with 4 attributes) with the pdata decode it
// guards, in both encodings.
func BenchmarkDepthCheck(b *testing.B) {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "checkout")
	rm.Resource().Attributes().PutStr("service.version", "v2")
	ms := rm.ScopeMetrics().AppendEmpty().Metrics()
	for s := range 200 {
		m := ms.AppendEmpty()
		m.SetName(fmt.Sprintf("http.server.requests.%d", s))
		dps := m.SetEmptyGauge().DataPoints()
		for p := range 5 {
			dp := dps.AppendEmpty()
			for _, k := range []string{"route", "method", "status", "host"} {
				dp.Attributes().PutStr(k, "/api/v1/orders")
			}
			dp.SetTimestamp(pcommon.Timestamp(1700000000000000000 + p))
			dp.SetDoubleValue(float64(p))
		}
	}
	req := exportMetrics(b, md)
	for _, tc := range []struct {
		name string
		body []byte
		run  func([]byte) error
	}{
		{"proto/scan", req.proto, func(p []byte) error { return CheckOTLPProtoDepth(p, OTLPMetrics) }},
		{"proto/decode", req.proto, func(p []byte) error { return pmetricotlp.NewExportRequest().UnmarshalProto(p) }},
		{"json/scan", req.json, CheckOTLPJSONDepth},
		{"json/decode", req.json, func(p []byte) error { return pmetricotlp.NewExportRequest().UnmarshalJSON(p) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(tc.body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := tc.run(tc.body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
