package remotewrite

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"google.golang.org/protobuf/encoding/protowire"
)

// The reference for both decoders is the gogo-protobuf code generated from
// Prometheus's own .proto files (prompb, prompb/io/prometheus/write/v2):
// every test decodes the same bytes with both and compares the results.

// flat is a decoder-independent view of a request, for comparison.
type flat struct {
	Series   []flatSeries
	Metadata []FamilyMetadata
}

type flatSeries struct {
	Labels     []Label
	Samples    []Sample
	Histograms []Histogram
	Exemplars  []Exemplar
	Metadata   Metadata
}

func flatten(r *Request) flat {
	var f flat
	for _, s := range r.Series {
		f.Series = append(f.Series, flatSeries{
			Labels: nilIfEmpty(s.Labels), Samples: nilIfEmpty(s.Samples), Histograms: nilIfEmpty(s.Histograms),
			Exemplars: normExemplars(s.Exemplars), Metadata: s.Metadata,
		})
	}
	f.Metadata = nilIfEmpty(r.Metadata)
	return f
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

func normExemplars(es []Exemplar) []Exemplar {
	var out []Exemplar
	for _, e := range es {
		e.Labels = nilIfEmpty(e.Labels)
		out = append(out, e)
	}
	return out
}

func flattenV1(req *prompb.WriteRequest) flat {
	var f flat
	for _, ts := range req.Timeseries {
		var s flatSeries
		for _, l := range ts.Labels {
			s.Labels = append(s.Labels, Label{l.Name, l.Value})
		}
		for _, smp := range ts.Samples {
			s.Samples = append(s.Samples, Sample{Value: smp.Value, Timestamp: smp.Timestamp})
		}
		for _, h := range ts.Histograms {
			if h.IsFloatHistogram() {
				s.Histograms = append(s.Histograms, Histogram{FH: h.ToFloatHistogram(), Timestamp: h.Timestamp})
			} else {
				s.Histograms = append(s.Histograms, Histogram{H: h.ToIntHistogram(), Timestamp: h.Timestamp})
			}
		}
		for _, e := range ts.Exemplars {
			var ex Exemplar
			for _, l := range e.Labels {
				ex.Labels = append(ex.Labels, Label{l.Name, l.Value})
			}
			ex.Value, ex.Timestamp = e.Value, e.Timestamp
			s.Exemplars = append(s.Exemplars, ex)
		}
		f.Series = append(f.Series, s)
	}
	for _, m := range req.Metadata {
		f.Metadata = append(f.Metadata, FamilyMetadata{Family: m.MetricFamilyName, Metadata: Metadata{
			Type: v1Type(m.Type), Help: m.Help, Unit: m.Unit,
		}})
	}
	return f
}

// v1Type maps the 1.0 enum by its name, independently of the decoder's mapping.
func v1Type(t prompb.MetricMetadata_MetricType) model.MetricType {
	if _, known := prompb.MetricMetadata_MetricType_name[int32(t)]; !known {
		return model.MetricTypeUnknown
	}
	return model.MetricType(strings.ToLower(t.String()))
}

func flattenV2(req *writev2.Request) (flat, error) {
	var f flat
	sym := func(ref uint32) (string, error) {
		if int(ref) >= len(req.Symbols) {
			return "", fmt.Errorf("ref %d out of range", ref)
		}
		return req.Symbols[ref], nil
	}
	pairs := func(refs []uint32) ([]Label, error) {
		if len(refs)%2 != 0 {
			return nil, fmt.Errorf("odd refs")
		}
		var ls []Label
		for i := 0; i < len(refs); i += 2 {
			n, err := sym(refs[i])
			if err != nil {
				return nil, err
			}
			v, err := sym(refs[i+1])
			if err != nil {
				return nil, err
			}
			ls = append(ls, Label{n, v})
		}
		return ls, nil
	}
	for _, ts := range req.Timeseries {
		var s flatSeries
		var err error
		if s.Labels, err = pairs(ts.LabelsRefs); err != nil {
			return f, err
		}
		for _, smp := range ts.Samples {
			s.Samples = append(s.Samples, Sample{Value: smp.Value, Timestamp: smp.Timestamp, StartTimestamp: smp.StartTimestamp})
		}
		for _, h := range ts.Histograms {
			if h.IsFloatHistogram() {
				s.Histograms = append(s.Histograms, Histogram{FH: h.ToFloatHistogram(), Timestamp: h.Timestamp, StartTimestamp: h.StartTimestamp})
			} else {
				s.Histograms = append(s.Histograms, Histogram{H: h.ToIntHistogram(), Timestamp: h.Timestamp, StartTimestamp: h.StartTimestamp})
			}
		}
		for _, e := range ts.Exemplars {
			var ex Exemplar
			if ex.Labels, err = pairs(e.LabelsRefs); err != nil {
				return f, err
			}
			ex.Value, ex.Timestamp = e.Value, e.Timestamp
			s.Exemplars = append(s.Exemplars, ex)
		}
		md, err := ts.ToMetadata(req.Symbols)
		if err != nil {
			return f, err
		}
		s.Metadata = md
		f.Series = append(f.Series, s)
	}
	return f, nil
}

var cmpOpts = []cmp.Option{
	cmpopts.EquateNaNs(),
	cmpopts.EquateEmpty(),
	cmp.Comparer(func(a, b *histogram.Histogram) bool {
		if a == nil || b == nil {
			return a == b
		}
		return a.Equals(b)
	}),
	cmp.Comparer(func(a, b *histogram.FloatHistogram) bool {
		if a == nil || b == nil {
			return a == b
		}
		return a.Equals(b)
	}),
}

// genV1 builds a random remote_write 1.0 request.
func genV1(rng *rand.Rand, series int) *prompb.WriteRequest {
	req := &prompb.WriteRequest{}
	for i := range series {
		ts := prompb.TimeSeries{Labels: []prompb.Label{
			{Name: "__name__", Value: fmt.Sprintf("metric_%d", rng.IntN(5))},
			{Name: "instance", Value: fmt.Sprintf("host-%d:9100", i)},
			{Name: "job", Value: "node"},
		}}
		for j := range rng.IntN(4) + 1 {
			ts.Samples = append(ts.Samples, prompb.Sample{Value: rng.NormFloat64() * 1e6, Timestamp: 1700000000000 + int64(j)*15000})
		}
		if rng.IntN(3) == 0 {
			ts.Exemplars = append(ts.Exemplars, prompb.Exemplar{Labels: []prompb.Label{{Name: "trace_id", Value: fmt.Sprintf("%032x", rng.Uint64())}}, Value: rng.Float64(), Timestamp: 1700000000001})
		}
		if rng.IntN(4) == 0 {
			ts.Histograms = append(ts.Histograms, prompb.FromIntHistogram(1700000000000, genHistogram(rng)))
		}
		if rng.IntN(6) == 0 {
			ts.Histograms = append(ts.Histograms, prompb.FromFloatHistogram(1700000000000, genHistogram(rng).ToFloat(nil)))
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	req.Metadata = append(req.Metadata, prompb.MetricMetadata{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "metric_1", Help: "A counter.", Unit: "seconds"})
	return req
}

func genHistogram(rng *rand.Rand) *histogram.Histogram {
	return &histogram.Histogram{
		Schema: int32(rng.IntN(4)), ZeroThreshold: 0.001, ZeroCount: 2, Count: 10, Sum: 18.4,
		PositiveSpans:   []histogram.Span{{Offset: 0, Length: 2}, {Offset: 1, Length: 2}},
		PositiveBuckets: []int64{1, 1, -1, 0},
		NegativeSpans:   []histogram.Span{{Offset: -2, Length: 1}},
		NegativeBuckets: []int64{3},
	}
}

// genV2 builds a random remote_write 2.0 request with interned symbols.
func genV2(rng *rand.Rand, series int) *writev2.Request {
	st := writev2.NewSymbolTable()
	req := &writev2.Request{}
	for i := range series {
		ts := writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels(labels.FromStrings(
			"__name__", fmt.Sprintf("metric_%d", rng.IntN(5)),
			"instance", fmt.Sprintf("host-%d:9100", i),
			"job", "node"), nil)}
		for j := range rng.IntN(4) + 1 {
			ts.Samples = append(ts.Samples, writev2.Sample{Value: rng.NormFloat64(), Timestamp: 1700000000000 + int64(j)*15000, StartTimestamp: 1699999990000})
		}
		if rng.IntN(3) == 0 {
			ts.Exemplars = append(ts.Exemplars, writev2.Exemplar{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("trace_id", fmt.Sprintf("%032x", rng.Uint64())), nil), Value: 1.5, Timestamp: 1700000000001})
		}
		if rng.IntN(4) == 0 {
			ts.Histograms = append(ts.Histograms, writev2.FromIntHistogram(0, 1700000000000, genHistogram(rng)))
		}
		ts.Metadata = writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, HelpRef: st.Symbolize("Help text."), UnitRef: st.Symbolize("bytes")}
		req.Timeseries = append(req.Timeseries, ts)
	}
	req.Symbols = st.Symbols()
	return req
}

func TestDecodeV1MatchesPrompb(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var r Request
	for i := range 50 {
		want := genV1(rng, i)
		b, err := want.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := DecodeV1(b, &r); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if diff := cmp.Diff(flattenV1(want), flatten(&r), cmpOpts...); diff != "" {
			t.Fatalf("request %d differs from prompb (-prompb +vigil):\n%s", i, diff)
		}
	}
}

func TestDecodeV2MatchesPrompb(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var r Request
	for i := range 50 {
		want := genV2(rng, i)
		b, err := want.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := DecodeV2(b, &r); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		wantFlat, err := flattenV2(want)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(wantFlat, flatten(&r), cmpOpts...); diff != "" {
			t.Fatalf("request %d differs from prompb (-prompb +vigil):\n%s", i, diff)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	validV1, _ := genV1(rand.New(rand.NewPCG(5, 6)), 3).Marshal()
	badRef := &writev2.Request{Symbols: []string{"", "__name__", "up"}, Timeseries: []writev2.TimeSeries{{LabelsRefs: []uint32{1, 7}, Samples: []writev2.Sample{{Value: 1, Timestamp: 1}}}}}
	badRefBytes, _ := badRef.Marshal()
	oddRefs := &writev2.Request{Symbols: []string{"", "__name__", "up"}, Timeseries: []writev2.TimeSeries{{LabelsRefs: []uint32{1, 2, 1}}}}
	oddRefsBytes, _ := oddRefs.Marshal()
	noEmpty := &writev2.Request{Symbols: []string{"__name__", "up"}, Timeseries: []writev2.TimeSeries{{LabelsRefs: []uint32{0, 1}}}}
	noEmptyBytes, _ := noEmpty.Marshal()

	for _, tc := range []struct {
		name    string
		v2      bool
		in      []byte
		wantErr string
	}{
		{"v1 truncated", false, validV1[:len(validV1)-3], "WriteRequest.metadata[0]: unexpected EOF"},
		{"v1 garbage tag", false, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "WriteRequest"},
		{"v1 wrong wire type", false, []byte{0x08, 0x01}, "field 1 has wire type 0"},
		{"v2 symbol ref out of range", true, badRefBytes, "symbol reference 7 out of range (3 symbols)"},
		{"v2 odd label refs", true, oddRefsBytes, "odd number (3) of label references"},
		{"v2 first symbol not empty", true, noEmptyBytes, "first symbol must be the empty string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			var err error
			if tc.v2 {
				err = DecodeV2(tc.in, &r)
			} else {
				err = DecodeV1(tc.in, &r)
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestDecodePackedAndUnpacked checks that repeated scalars are read in both
// encodings a protobuf writer may use.
func TestDecodePackedAndUnpacked(t *testing.T) {
	// Request{symbols: ["", "__name__", "up"], timeseries: [{labels_refs: 1, 2 (unpacked), samples: [{value: 1, ts: 5}]}]}
	var ts []byte
	ts = append(ts, 0x08, 0x01, 0x08, 0x02)                          // labels_refs unpacked
	sample := []byte{0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0x05} // value 1.0, timestamp 5
	ts = append(ts, 0x12, byte(len(sample)))
	ts = append(ts, sample...)
	var b []byte
	for _, s := range []string{"", "__name__", "up"} {
		b = append(b, 0x22, byte(len(s)))
		b = append(b, s...)
	}
	b = append(b, 0x2a, byte(len(ts)))
	b = append(b, ts...)
	var r Request
	if err := DecodeV2(b, &r); err != nil {
		t.Fatal(err)
	}
	if got := flatten(&r); len(got.Series) != 1 || got.Series[0].Labels[0] != (Label{"__name__", "up"}) || got.Series[0].Samples[0] != (Sample{Value: 1, Timestamp: 5}) {
		t.Fatalf("got %+v", got)
	}
}

// FuzzDecodeV1 checks that the 1.0 decoder never panics and agrees with
// prompb whenever prompb accepts the input.
func FuzzDecodeV1(f *testing.F) {
	addSeeds(f, "FuzzDecodeV1")
	var r Request
	f.Fuzz(func(t *testing.T, b []byte) {
		err := DecodeV1(b, &r)
		var ref prompb.WriteRequest
		if refErr := ref.Unmarshal(b); refErr != nil || err != nil {
			return
		}
		if diff := cmp.Diff(flattenV1(&ref), flatten(&r), cmpOpts...); diff != "" {
			t.Fatalf("differs from prompb (-prompb +vigil):\n%s", diff)
		}
	})
}

// FuzzDecodeV2 checks that the 2.0 decoder never panics and agrees with
// prompb whenever prompb accepts the input and its symbol references resolve.
func FuzzDecodeV2(f *testing.F) {
	addSeeds(f, "FuzzDecodeV2")
	var r Request
	f.Fuzz(func(t *testing.T, b []byte) {
		err := DecodeV2(b, &r)
		var ref writev2.Request
		if refErr := ref.Unmarshal(b); refErr != nil || err != nil {
			return
		}
		want, refErr := flattenV2(&ref)
		if refErr != nil {
			t.Fatalf("vigil accepted what prompb cannot resolve: %v", refErr)
		}
		if diff := cmp.Diff(want, flatten(&r), cmpOpts...); diff != "" {
			t.Fatalf("differs from prompb (-prompb +vigil):\n%s", diff)
		}
	})
}

// addSeeds adds generated requests plus the corpus files checked in under
// testdata/fuzz/<name> (go test reads those itself; generated seeds keep the
// corpus meaningful when the directory is regenerated).
func addSeeds(f *testing.F, name string) {
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 4 {
		var b []byte
		if name == "FuzzDecodeV1" {
			b, _ = genV1(rng, i*3).Marshal()
		} else {
			b, _ = genV2(rng, i*3).Marshal()
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x80})
	f.Add([]byte{0x09, 0, 0, 0, 0, 0, 0, 0xf0, math.MaxUint8})
	if _, err := os.Stat(filepath.Join("testdata", "fuzz", name)); err != nil {
		f.Logf("no checked-in corpus for %s: %v", name, err)
	}
}

// TestDecodeDeepNesting: remote_write nests three levels deep, and the
// decoders descend only into the fields they know, so nesting is bounded
// by construction: a million levels in an unknown field are skipped by
// length without recursion, and a million nested groups are refused by
// protowire's recursion limit instead of overflowing the stack.
func TestDecodeDeepNesting(t *testing.T) {
	// Build a million levels outside in, without copying the inner ones.
	const levels = 1_000_000
	inner := []byte("x")
	lens := make([]int, levels+1)
	lens[0] = len(inner)
	for i := 1; i <= levels; i++ {
		lens[i] = protowire.SizeTag(99) + protowire.SizeVarint(uint64(lens[i-1])) + lens[i-1]
	}
	unknown := make([]byte, 0, lens[levels])
	for i := levels; i >= 1; i-- {
		unknown = protowire.AppendTag(unknown, 99, protowire.BytesType)
		unknown = protowire.AppendVarint(unknown, uint64(lens[i-1]))
	}
	unknown = append(unknown, inner...)
	series := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType),
		append(protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "__name__"), protowire.AppendString(protowire.AppendTag(nil, 2, protowire.BytesType), "m")...))
	ts := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), append(series, unknown...))
	var r Request
	if err := DecodeV1(ts, &r); err != nil || len(r.Series) != 1 {
		t.Fatalf("a million levels in an unknown field: %v, %d series", err, len(r.Series))
	}

	groups := append(bytes.Repeat(protowire.AppendTag(nil, 99, protowire.StartGroupType), levels), bytes.Repeat(protowire.AppendTag(nil, 99, protowire.EndGroupType), levels)...)
	for name, decode := range map[string]func([]byte, *Request) error{"1.0": DecodeV1, "2.0": DecodeV2} {
		if err := decode(groups, &r); err == nil {
			t.Errorf("%s: a million nested groups were accepted", name)
		}
	}
}
