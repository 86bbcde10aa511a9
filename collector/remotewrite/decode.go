package remotewrite

import (
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/metadata"
	"google.golang.org/protobuf/encoding/protowire"
)

// The decoders below read remote_write 1.0 (prometheus.WriteRequest) and 2.0
// (io.prometheus.write.v2.Request) protobuf messages straight into a reusable
// Request. Strings alias the decompressed buffer instead of being copied, so
// a Request is valid only while that buffer is; storage copies what it keeps.
// They accept every valid encoding (packed and unpacked repeated scalars,
// fields in any order, unknown fields) and reject truncated or malformed
// input with an error naming where decoding stopped.

// Label is one label pair of a series or an exemplar.
type Label struct{ Name, Value string }

// Sample is one float sample.
type Sample struct {
	Value          float64
	Timestamp      int64
	StartTimestamp int64
}

// Histogram is one native histogram sample; exactly one of H and FH is set.
type Histogram struct {
	H              *histogram.Histogram
	FH             *histogram.FloatHistogram
	Timestamp      int64
	StartTimestamp int64
}

// Exemplar is an exemplar attached to a series.
type Exemplar struct {
	Labels    []Label
	Value     float64
	Timestamp int64
}

// Metadata describes a metric family: type, help and unit.
type Metadata = metadata.Metadata

// FamilyMetadata is a remote_write 1.0 metadata entry.
type FamilyMetadata struct {
	Family string
	Metadata
}

// Series is one time series of a request with its samples.
type Series struct {
	Labels     []Label
	Samples    []Sample
	Histograms []Histogram
	Exemplars  []Exemplar
	// Metadata is set by remote_write 2.0 senders.
	Metadata Metadata
}

// Request is a decoded write request of either protocol version.
type Request struct {
	Series   []Series
	Metadata []FamilyMetadata

	labels    []Label
	exLabels  []Label
	samples   []Sample
	exemplars []Exemplar
	symbols   []string
	tsRanges  [][]byte
	refs      []uint32
}

// Reset empties r for reuse, keeping its memory.
func (r *Request) Reset() {
	clear(r.Series)
	r.Series = r.Series[:0]
	r.Metadata = r.Metadata[:0]
	r.labels = r.labels[:0]
	r.exLabels = r.exLabels[:0]
	r.samples = r.samples[:0]
	clear(r.exemplars)
	r.exemplars = r.exemplars[:0]
	r.symbols = r.symbols[:0]
	r.tsRanges = r.tsRanges[:0]
	r.refs = r.refs[:0]
}

// NumSamples counts the float samples, histograms and exemplars of r.
func (r *Request) NumSamples() (floats, histograms, exemplars int) {
	for i := range r.Series {
		floats += len(r.Series[i].Samples)
		histograms += len(r.Series[i].Histograms)
		exemplars += len(r.Series[i].Exemplars)
	}
	return floats, histograms, exemplars
}

// bytesToString aliases b without copying.
func bytesToString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// field reads the next tag. It returns the field number, wire type and the
// length of the tag.
func field(b []byte) (protowire.Number, protowire.Type, int, error) {
	if len(b) > 0 && b[0] < 0x80 && b[0]>>3 != 0 { // one-byte tag: fields 1-15
		return protowire.Number(b[0] >> 3), protowire.Type(b[0] & 7), 1, nil
	}
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return 0, 0, 0, protowire.ParseError(n)
	}
	return num, typ, n, nil
}

func skip(b []byte, num protowire.Number, typ protowire.Type) (int, error) {
	n := protowire.ConsumeFieldValue(num, typ, b)
	if n < 0 {
		return 0, protowire.ParseError(n)
	}
	return n, nil
}

func wantType(num protowire.Number, got, want protowire.Type) error {
	if got != want {
		return fmt.Errorf("field %d has wire type %d, want %d", num, got, want)
	}
	return nil
}

func consumeBytes(b []byte, num protowire.Number, typ protowire.Type) ([]byte, int, error) {
	if typ != protowire.BytesType {
		return nil, 0, wantType(num, typ, protowire.BytesType)
	}
	if len(b) > 0 && b[0] < 0x80 { // one-byte length
		if n := int(b[0]); 1+n <= len(b) {
			return b[1 : 1+n], 1 + n, nil
		}
	}
	v, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return nil, 0, protowire.ParseError(n)
	}
	return v, n, nil
}

func consumeVarint(b []byte, num protowire.Number, typ protowire.Type) (uint64, int, error) {
	if err := wantType(num, typ, protowire.VarintType); err != nil {
		return 0, 0, err
	}
	v, n := protowire.ConsumeVarint(b)
	if n < 0 {
		return 0, 0, protowire.ParseError(n)
	}
	return v, n, nil
}

func consumeDouble(b []byte, num protowire.Number, typ protowire.Type) (float64, int, error) {
	if err := wantType(num, typ, protowire.Fixed64Type); err != nil {
		return 0, 0, err
	}
	v, n := protowire.ConsumeFixed64(b)
	if n < 0 {
		return 0, 0, protowire.ParseError(n)
	}
	return math.Float64frombits(v), n, nil
}

// forEachPacked calls fn for each element of a repeated scalar field, which
// may be encoded packed (one length-delimited run) or one value per tag.
func forEachPacked(b []byte, num protowire.Number, typ, elem protowire.Type, fn func(v uint64)) (int, error) {
	if typ != protowire.BytesType {
		if typ != elem {
			return 0, fmt.Errorf("field %d has wire type %d, want %d or packed", num, typ, elem)
		}
		v, n := consumeScalar(b, elem)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		fn(v)
		return n, nil
	}
	run, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return 0, protowire.ParseError(n)
	}
	for len(run) > 0 {
		v, m := consumeScalar(run, elem)
		if m < 0 {
			return 0, protowire.ParseError(m)
		}
		fn(v)
		run = run[m:]
	}
	return n, nil
}

func consumeScalar(b []byte, typ protowire.Type) (uint64, int) {
	switch typ {
	case protowire.VarintType:
		return protowire.ConsumeVarint(b)
	case protowire.Fixed64Type:
		return protowire.ConsumeFixed64(b)
	case protowire.Fixed32Type:
		v, n := protowire.ConsumeFixed32(b)
		return uint64(v), n
	}
	return 0, -1
}

// DecodeV1 decodes a remote_write 1.0 prometheus.WriteRequest into r.
func DecodeV1(b []byte, r *Request) error {
	r.Reset()
	for len(b) > 0 {
		num, typ, n, err := field(b)
		if err != nil {
			return fmt.Errorf("WriteRequest: %w", err)
		}
		b = b[n:]
		switch num {
		case 1: // timeseries
			msg, n, err := consumeBytes(b, num, typ)
			if err != nil {
				return fmt.Errorf("WriteRequest.timeseries[%d]: %w", len(r.Series), err)
			}
			if err := r.decodeSeriesV1(msg); err != nil {
				return fmt.Errorf("WriteRequest.timeseries[%d]: %w", len(r.Series), err)
			}
			b = b[n:]
		case 3: // metadata
			msg, n, err := consumeBytes(b, num, typ)
			if err != nil {
				return fmt.Errorf("WriteRequest.metadata[%d]: %w", len(r.Metadata), err)
			}
			md, err := decodeMetadataV1(msg)
			if err != nil {
				return fmt.Errorf("WriteRequest.metadata[%d]: %w", len(r.Metadata), err)
			}
			r.Metadata = append(r.Metadata, md)
			b = b[n:]
		default:
			n, err := skip(b, num, typ)
			if err != nil {
				return fmt.Errorf("WriteRequest field %d: %w", num, err)
			}
			b = b[n:]
		}
	}
	return nil
}

func (r *Request) decodeSeriesV1(b []byte) error {
	lStart, sStart, eStart := len(r.labels), len(r.samples), len(r.exemplars)
	var hs []Histogram
	for len(b) > 0 {
		num, typ, n, err := field(b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case 1: // labels
			msg, n, err := consumeBytes(b, num, typ)
			if err != nil {
				return fmt.Errorf("labels[%d]: %w", len(r.labels)-lStart, err)
			}
			l, err := decodeLabel(msg)
			if err != nil {
				return fmt.Errorf("labels[%d]: %w", len(r.labels)-lStart, err)
			}
			r.labels = append(r.labels, l)
			b = b[n:]
		case 2: // samples
			msg, n, err := consumeBytes(b, num, typ)
			if err != nil {
				return fmt.Errorf("samples[%d]: %w", len(r.samples)-sStart, err)
			}
			s, err := decodeSample(msg, false)
			if err != nil {
				return fmt.Errorf("samples[%d]: %w", len(r.samples)-sStart, err)
			}
			r.samples = append(r.samples, s)
			b = b[n:]
		case 3: // exemplars
			msg, n, err := consumeBytes(b, num, typ)
			if err != nil {
				return fmt.Errorf("exemplars[%d]: %w", len(r.exemplars)-eStart, err)
			}
			e, err := r.decodeExemplarV1(msg)
			if err != nil {
				return fmt.Errorf("exemplars[%d]: %w", len(r.exemplars)-eStart, err)
			}
			r.exemplars = append(r.exemplars, e)
			b = b[n:]
		case 4: // histograms
			msg, n, err := consumeBytes(b, num, typ)
			if err != nil {
				return fmt.Errorf("histograms[%d]: %w", len(hs), err)
			}
			h, err := decodeHistogram(msg, false)
			if err != nil {
				return fmt.Errorf("histograms[%d]: %w", len(hs), err)
			}
			hs = append(hs, h)
			b = b[n:]
		default:
			n, err := skip(b, num, typ)
			if err != nil {
				return fmt.Errorf("field %d: %w", num, err)
			}
			b = b[n:]
		}
	}
	r.Series = append(r.Series, Series{
		Labels:     r.labels[lStart:len(r.labels):len(r.labels)],
		Samples:    r.samples[sStart:len(r.samples):len(r.samples)],
		Exemplars:  r.exemplars[eStart:len(r.exemplars):len(r.exemplars)],
		Histograms: hs,
	})
	return nil
}

func decodeLabel(b []byte) (Label, error) {
	// Fast path for the encoding every writer produces: name (field 1) then
	// value (field 2), each shorter than 128 bytes.
	if len(b) >= 4 && b[0] == 0x0a && b[1] < 0x80 {
		n := int(b[1])
		if 4+n <= len(b) && b[2+n] == 0x12 && b[3+n] < 0x80 && 4+n+int(b[3+n]) == len(b) {
			return Label{Name: bytesToString(b[2 : 2+n]), Value: bytesToString(b[4+n:])}, nil
		}
	}
	var l Label
	for len(b) > 0 {
		num, typ, n, err := field(b)
		if err != nil {
			return l, err
		}
		b = b[n:]
		switch num {
		case 1, 2:
			v, n, err := consumeBytes(b, num, typ)
			if err != nil {
				return l, err
			}
			if num == 1 {
				l.Name = bytesToString(v)
			} else {
				l.Value = bytesToString(v)
			}
			b = b[n:]
		default:
			n, err := skip(b, num, typ)
			if err != nil {
				return l, err
			}
			b = b[n:]
		}
	}
	return l, nil
}

// decodeSample reads a Sample of either version: 1 value, 2 timestamp, 3 start_timestamp (2.0).
func decodeSample(b []byte, v2 bool) (Sample, error) {
	var s Sample
	for len(b) > 0 {
		num, typ, n, err := field(b)
		if err != nil {
			return s, err
		}
		b = b[n:]
		switch num {
		case 1:
			v, n, err := consumeDouble(b, num, typ)
			if err != nil {
				return s, err
			}
			s.Value = v
			b = b[n:]
		case 2, 3:
			if num == 3 && !v2 {
				n, err := skip(b, num, typ)
				if err != nil {
					return s, err
				}
				b = b[n:]
				continue
			}
			v, n, err := consumeVarint(b, num, typ)
			if err != nil {
				return s, err
			}
			if num == 2 {
				s.Timestamp = int64(v)
			} else {
				s.StartTimestamp = int64(v)
			}
			b = b[n:]
		default:
			n, err := skip(b, num, typ)
			if err != nil {
				return s, err
			}
			b = b[n:]
		}
	}
	return s, nil
}

func (r *Request) decodeExemplarV1(b []byte) (Exemplar, error) {
	var e Exemplar
	lStart := len(r.exLabels)
	for len(b) > 0 {
		num, typ, n, err := field(b)
		if err != nil {
			return e, err
		}
		b = b[n:]
		switch num {
		case 1:
			msg, n, err := consumeBytes(b, num, typ)
			if err != nil {
				return e, err
			}
			l, err := decodeLabel(msg)
			if err != nil {
				return e, fmt.Errorf("labels: %w", err)
			}
			r.exLabels = append(r.exLabels, l)
			b = b[n:]
		case 2:
			v, n, err := consumeDouble(b, num, typ)
			if err != nil {
				return e, err
			}
			e.Value = v
			b = b[n:]
		case 3:
			v, n, err := consumeVarint(b, num, typ)
			if err != nil {
				return e, err
			}
			e.Timestamp = int64(v)
			b = b[n:]
		default:
			n, err := skip(b, num, typ)
			if err != nil {
				return e, err
			}
			b = b[n:]
		}
	}
	e.Labels = r.exLabels[lStart:len(r.exLabels):len(r.exLabels)]
	return e, nil
}

func decodeMetadataV1(b []byte) (FamilyMetadata, error) {
	md := FamilyMetadata{Metadata: Metadata{Type: model.MetricTypeUnknown}}
	for len(b) > 0 {
		num, typ, n, err := field(b)
		if err != nil {
			return md, err
		}
		b = b[n:]
		switch num {
		case 1:
			v, n, err := consumeVarint(b, num, typ)
			if err != nil {
				return md, err
			}
			md.Type = metricType(v)
			b = b[n:]
		case 2, 4, 5:
			v, n, err := consumeBytes(b, num, typ)
			if err != nil {
				return md, err
			}
			switch num {
			case 2:
				md.Family = bytesToString(v)
			case 4:
				md.Help = bytesToString(v)
			case 5:
				md.Unit = bytesToString(v)
			}
			b = b[n:]
		default:
			n, err := skip(b, num, typ)
			if err != nil {
				return md, err
			}
			b = b[n:]
		}
	}
	return md, nil
}

// metricType maps the MetricType enum shared by both protocol versions.
func metricType(v uint64) model.MetricType {
	switch v {
	case 1:
		return model.MetricTypeCounter
	case 2:
		return model.MetricTypeGauge
	case 3:
		return model.MetricTypeHistogram
	case 4:
		return model.MetricTypeGaugeHistogram
	case 5:
		return model.MetricTypeSummary
	case 6:
		return model.MetricTypeInfo
	case 7:
		return model.MetricTypeStateset
	}
	return model.MetricTypeUnknown
}

// DecodeV2 decodes a remote_write 2.0 io.prometheus.write.v2.Request into r,
// resolving every symbol reference.
func DecodeV2(b []byte, r *Request) error {
	r.Reset()
	for len(b) > 0 {
		num, typ, n, err := field(b)
		if err != nil {
			return fmt.Errorf("Request: %w", err)
		}
		b = b[n:]
		switch num {
		case 4: // symbols
			v, n, err := consumeBytes(b, num, typ)
			if err != nil {
				return fmt.Errorf("request.symbols[%d]: %w", len(r.symbols), err)
			}
			r.symbols = append(r.symbols, bytesToString(v))
			b = b[n:]
		case 5: // timeseries, decoded once all symbols are known
			v, n, err := consumeBytes(b, num, typ)
			if err != nil {
				return fmt.Errorf("request.timeseries[%d]: %w", len(r.tsRanges), err)
			}
			r.tsRanges = append(r.tsRanges, v)
			b = b[n:]
		default:
			n, err := skip(b, num, typ)
			if err != nil {
				return fmt.Errorf("Request field %d: %w", num, err)
			}
			b = b[n:]
		}
	}
	if len(r.tsRanges) > 0 && (len(r.symbols) == 0 || r.symbols[0] != "") {
		return errors.New("request.symbols: the first symbol must be the empty string")
	}
	for i, ts := range r.tsRanges {
		if err := r.decodeSeriesV2(ts); err != nil {
			return fmt.Errorf("request.timeseries[%d]: %w", i, err)
		}
	}
	return nil
}

func (r *Request) symbol(ref uint32) (string, error) {
	if int(ref) >= len(r.symbols) {
		return "", fmt.Errorf("symbol reference %d out of range (%d symbols)", ref, len(r.symbols))
	}
	return r.symbols[ref], nil
}

// resolveLabels turns the refs collected in r.refs into labels appended to r.labels.
func (r *Request) resolveLabels(dst *[]Label, refs []uint32) ([]Label, error) {
	if len(refs)%2 != 0 {
		return nil, fmt.Errorf("odd number (%d) of label references", len(refs))
	}
	start := len(*dst)
	for i := 0; i < len(refs); i += 2 {
		name, err := r.symbol(refs[i])
		if err != nil {
			return nil, err
		}
		value, err := r.symbol(refs[i+1])
		if err != nil {
			return nil, err
		}
		*dst = append(*dst, Label{Name: name, Value: value})
	}
	return (*dst)[start:len(*dst):len(*dst)], nil
}

func (r *Request) decodeSeriesV2(b []byte) error {
	refStart := len(r.refs)
	sStart, eStart := len(r.samples), len(r.exemplars)
	var (
		hs []Histogram
		md = Metadata{Type: model.MetricTypeUnknown}
	)
	for len(b) > 0 {
		num, typ, n, err := field(b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case 1: // labels_refs
			n, err := forEachPacked(b, num, typ, protowire.VarintType, func(v uint64) { r.refs = append(r.refs, uint32(v)) })
			if err != nil {
				return fmt.Errorf("labels_refs: %w", err)
			}
			b = b[n:]
		case 2: // samples
			msg, n, err := consumeBytes(b, num, typ)
			if err != nil {
				return fmt.Errorf("samples[%d]: %w", len(r.samples)-sStart, err)
			}
			s, err := decodeSample(msg, true)
			if err != nil {
				return fmt.Errorf("samples[%d]: %w", len(r.samples)-sStart, err)
			}
			r.samples = append(r.samples, s)
			b = b[n:]
		case 3: // histograms
			msg, n, err := consumeBytes(b, num, typ)
			if err != nil {
				return fmt.Errorf("histograms[%d]: %w", len(hs), err)
			}
			h, err := decodeHistogram(msg, true)
			if err != nil {
				return fmt.Errorf("histograms[%d]: %w", len(hs), err)
			}
			hs = append(hs, h)
			b = b[n:]
		case 4: // exemplars
			msg, n, err := consumeBytes(b, num, typ)
			if err != nil {
				return fmt.Errorf("exemplars[%d]: %w", len(r.exemplars)-eStart, err)
			}
			e, err := r.decodeExemplarV2(msg)
			if err != nil {
				return fmt.Errorf("exemplars[%d]: %w", len(r.exemplars)-eStart, err)
			}
			r.exemplars = append(r.exemplars, e)
			b = b[n:]
		case 5: // metadata
			msg, n, err := consumeBytes(b, num, typ)
			if err != nil {
				return fmt.Errorf("metadata: %w", err)
			}
			if md, err = r.decodeMetadataV2(msg); err != nil {
				return fmt.Errorf("metadata: %w", err)
			}
			b = b[n:]
		default:
			n, err := skip(b, num, typ)
			if err != nil {
				return fmt.Errorf("field %d: %w", num, err)
			}
			b = b[n:]
		}
	}
	ls, err := r.resolveLabels(&r.labels, r.refs[refStart:])
	if err != nil {
		return fmt.Errorf("labels_refs: %w", err)
	}
	r.refs = r.refs[:refStart]
	r.Series = append(r.Series, Series{
		Labels:     ls,
		Samples:    r.samples[sStart:len(r.samples):len(r.samples)],
		Exemplars:  r.exemplars[eStart:len(r.exemplars):len(r.exemplars)],
		Histograms: hs,
		Metadata:   md,
	})
	return nil
}

func (r *Request) decodeExemplarV2(b []byte) (Exemplar, error) {
	var e Exemplar
	refStart := len(r.refs)
	for len(b) > 0 {
		num, typ, n, err := field(b)
		if err != nil {
			return e, err
		}
		b = b[n:]
		switch num {
		case 1:
			n, err := forEachPacked(b, num, typ, protowire.VarintType, func(v uint64) { r.refs = append(r.refs, uint32(v)) })
			if err != nil {
				return e, fmt.Errorf("labels_refs: %w", err)
			}
			b = b[n:]
		case 2:
			v, n, err := consumeDouble(b, num, typ)
			if err != nil {
				return e, err
			}
			e.Value = v
			b = b[n:]
		case 3:
			v, n, err := consumeVarint(b, num, typ)
			if err != nil {
				return e, err
			}
			e.Timestamp = int64(v)
			b = b[n:]
		default:
			n, err := skip(b, num, typ)
			if err != nil {
				return e, err
			}
			b = b[n:]
		}
	}
	ls, err := r.resolveLabels(&r.exLabels, r.refs[refStart:])
	if err != nil {
		return e, fmt.Errorf("labels_refs: %w", err)
	}
	r.refs = r.refs[:refStart]
	e.Labels = ls
	return e, nil
}

func (r *Request) decodeMetadataV2(b []byte) (Metadata, error) {
	md := Metadata{Type: model.MetricTypeUnknown}
	for len(b) > 0 {
		num, typ, n, err := field(b)
		if err != nil {
			return md, err
		}
		b = b[n:]
		switch num {
		case 1, 3, 4:
			v, n, err := consumeVarint(b, num, typ)
			if err != nil {
				return md, err
			}
			switch num {
			case 1:
				md.Type = metricType(v)
			case 3:
				if md.Help, err = r.symbol(uint32(v)); err != nil {
					return md, fmt.Errorf("help_ref: %w", err)
				}
			case 4:
				if md.Unit, err = r.symbol(uint32(v)); err != nil {
					return md, fmt.Errorf("unit_ref: %w", err)
				}
			}
			b = b[n:]
		default:
			n, err := skip(b, num, typ)
			if err != nil {
				return md, err
			}
			b = b[n:]
		}
	}
	return md, nil
}
