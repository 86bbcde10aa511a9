package collector

import (
	"bytes"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Nesting limits. OTLP lets an attribute or a log body nest arrays and
// key-value lists within one another without bound, and the decoders and
// every walk over such a value recurse once per level: a request nesting a
// million levels overflows the stack and kills the process. The receivers
// check the nesting of the wire bytes before anything decodes them, and
// refuse a request that nests deeper than these limits with 400 (gRPC
// InvalidArgument).
const (
	// MaxAnyValueDepth is how many arrays and key-value lists an OTLP value
	// may nest within one another (the OpenTelemetry Collector's limit).
	MaxAnyValueDepth = 64
	// MaxOTLPJSONDepth bounds the brackets of an OTLP/JSON body: the
	// deepest fixed structure (an exemplar's attribute value) plus four
	// brackets for each of MaxAnyValueDepth key-value lists.
	MaxOTLPJSONDepth = 32 + 4*MaxAnyValueDepth
	// MaxLokiJSONDepth bounds the brackets of a Loki JSON push, whose
	// structure nests six deep.
	MaxLokiJSONDepth = 32
)

// DepthError is a request that nests deeper than a limit.
type DepthError struct {
	What  string // what nests too deep
	Limit int
}

func (e *DepthError) Error() string {
	return fmt.Sprintf("%s nest deeper than the limit of %d levels", e.What, e.Limit)
}

var errAnyValueTooDeep = &DepthError{What: "attribute or log body values (arrays and key-value lists)", Limit: MaxAnyValueDepth}

// OTLPSignal is the kind of OTLP export request a payload holds.
type OTLPSignal int

// The OTLP export requests.
const (
	OTLPMetrics OTLPSignal = iota
	OTLPTraces
	OTLPLogs
)

// protoNode is an OTLP protobuf message, reduced to the fields through
// which an AnyValue can be reached.
type protoNode struct {
	fields []protoField
	// level: entering the message nests a value one level deeper
	// (ArrayValue, KeyValueList).
	level bool
	// byNum indexes fields by number, for the numbers below 16.
	byNum [16]*protoNode
}

type protoField struct {
	num  protowire.Number
	node *protoNode
}

func (n *protoNode) child(num protowire.Number) *protoNode {
	if num < protowire.Number(len(n.byNum)) {
		return n.byNum[num]
	}
	for _, f := range n.fields {
		if f.num == num {
			return f.node
		}
	}
	return nil
}

// The OTLP schema (opentelemetry-proto v1), field numbers as on the wire.
var (
	anyValue     = &protoNode{}
	arrayValue   = &protoNode{level: true}
	keyValueList = &protoNode{level: true}
	keyValue     = &protoNode{fields: []protoField{{2, anyValue}}}
	attributes   = keyValue

	resource = &protoNode{fields: []protoField{{1, attributes}}}
	scope    = &protoNode{fields: []protoField{{3, attributes}}}

	exemplar        = &protoNode{fields: []protoField{{7, attributes}}}
	numberPoint     = &protoNode{fields: []protoField{{7, attributes}, {5, exemplar}}}
	histogramPoint  = &protoNode{fields: []protoField{{9, attributes}, {8, exemplar}}}
	expHistPoint    = &protoNode{fields: []protoField{{1, attributes}, {11, exemplar}}}
	summaryPoint    = &protoNode{fields: []protoField{{7, attributes}}}
	metric          = &protoNode{}
	scopeMetrics    = &protoNode{fields: []protoField{{1, scope}, {2, metric}}}
	resourceMetrics = &protoNode{fields: []protoField{{1, resource}, {2, scopeMetrics}, {1000, scopeMetrics}}}
	metricsRequest  = &protoNode{fields: []protoField{{1, resourceMetrics}}}

	spanEvent     = &protoNode{fields: []protoField{{3, attributes}}}
	spanLink      = &protoNode{fields: []protoField{{4, attributes}}}
	span          = &protoNode{fields: []protoField{{9, attributes}, {11, spanEvent}, {13, spanLink}}}
	scopeSpans    = &protoNode{fields: []protoField{{1, scope}, {2, span}}}
	resourceSpans = &protoNode{fields: []protoField{{1, resource}, {2, scopeSpans}, {1000, scopeSpans}}}
	tracesRequest = &protoNode{fields: []protoField{{1, resourceSpans}}}

	logRecord     = &protoNode{fields: []protoField{{5, anyValue}, {6, attributes}}}
	scopeLogs     = &protoNode{fields: []protoField{{1, scope}, {2, logRecord}}}
	resourceLogs  = &protoNode{fields: []protoField{{1, resource}, {2, scopeLogs}, {1000, scopeLogs}}}
	logsRequest   = &protoNode{fields: []protoField{{1, resourceLogs}}}
	otlpProtoRoot = [...]*protoNode{OTLPMetrics: metricsRequest, OTLPTraces: tracesRequest, OTLPLogs: logsRequest}
)

func init() {
	// The recursive part: AnyValue.array_value and .kvlist_value,
	// ArrayValue.values, KeyValueList.values.
	anyValue.fields = []protoField{{5, arrayValue}, {6, keyValueList}}
	arrayValue.fields = []protoField{{1, anyValue}}
	keyValueList.fields = []protoField{{1, keyValue}}
	// Metric.gauge, .sum, .histogram, .exponential_histogram, .summary
	// hold their data points in field 1; Metric.metadata is attributes.
	metric.fields = []protoField{
		{5, &protoNode{fields: []protoField{{1, numberPoint}}}},
		{7, &protoNode{fields: []protoField{{1, numberPoint}}}},
		{9, &protoNode{fields: []protoField{{1, histogramPoint}}}},
		{10, &protoNode{fields: []protoField{{1, expHistPoint}}}},
		{11, &protoNode{fields: []protoField{{1, summaryPoint}}}},
		{12, attributes},
	}
	seen := map[*protoNode]bool{}
	var index func(n *protoNode)
	index = func(n *protoNode) {
		if seen[n] {
			return
		}
		seen[n] = true
		for _, f := range n.fields {
			if int(f.num) < len(n.byNum) {
				n.byNum[f.num] = f.node
			}
			index(f.node)
		}
	}
	for _, root := range otlpProtoRoot {
		index(root)
	}
}

// CheckOTLPProtoDepth walks the protobuf encoding of an OTLP export
// request and fails with a *DepthError when a value nests deeper than
// MaxAnyValueDepth. It descends only into the fields that lead to values,
// never decodes or allocates, and stops at the first level past the limit.
// Malformed input is left for the decoder to refuse.
func CheckOTLPProtoDepth(b []byte, s OTLPSignal) error {
	if int(s) < 0 || int(s) >= len(otlpProtoRoot) {
		return fmt.Errorf("unknown OTLP signal %d", s)
	}
	return walkProto(b, otlpProtoRoot[s], 0)
}

// walkProto recurses at most once per schema level, and the value levels
// are bounded by MaxAnyValueDepth, so its own depth is bounded. Tags and
// lengths of one byte, the common case, are read inline.
func walkProto(b []byte, n *protoNode, level int) error {
	if n.level {
		level++
		if level > MaxAnyValueDepth {
			return errAnyValueTooDeep
		}
	}
	for len(b) > 0 {
		var (
			num protowire.Number
			typ protowire.Type
		)
		if b[0] < 0x80 {
			num, typ = protowire.Number(b[0]>>3), protowire.Type(b[0]&7)
			b = b[1:]
		} else {
			var k int
			if num, typ, k = protowire.ConsumeTag(b); k < 0 {
				return nil
			}
			b = b[k:]
		}
		switch typ {
		case protowire.BytesType:
		case protowire.Fixed64Type:
			if len(b) < 8 {
				return nil
			}
			b = b[8:]
			continue
		case protowire.Fixed32Type:
			if len(b) < 4 {
				return nil
			}
			b = b[4:]
			continue
		default:
			k := protowire.ConsumeFieldValue(num, typ, b)
			if k < 0 {
				return nil
			}
			b = b[k:]
			continue
		}
		var size uint64
		if len(b) > 0 && b[0] < 0x80 {
			size = uint64(b[0])
			b = b[1:]
		} else {
			var k int
			if size, k = protowire.ConsumeVarint(b); k < 0 {
				return nil
			}
			b = b[k:]
		}
		if size > uint64(len(b)) {
			return nil
		}
		if child := n.child(num); child != nil && (child != anyValue || !shortString(b[:size])) {
			if err := walkProto(b[:size], child, level); err != nil {
				return err
			}
		}
		b = b[size:]
	}
	return nil
}

// shortString reports whether an AnyValue is nothing but a string of
// fewer than 128 bytes, as most attribute values are: it cannot nest.
func shortString(v []byte) bool {
	return len(v) >= 2 && v[0] == 0x0a && v[1] < 0x80 && int(v[1]) == len(v)-2
}

// CheckJSONDepth fails with a *DepthError when the objects and arrays of a
// JSON document nest deeper than maxDepth. It reads the bytes once, without
// decoding; malformed JSON is left for the decoder to refuse.
func CheckJSONDepth(b []byte, maxDepth int) error {
	return scanJSON(b, maxDepth, false)
}

// CheckOTLPJSONDepth checks an OTLP/JSON export request: its brackets nest
// at most MaxOTLPJSONDepth deep and its values (arrayValue, kvlistValue)
// at most MaxAnyValueDepth.
func CheckOTLPJSONDepth(b []byte) error {
	return scanJSON(b, MaxOTLPJSONDepth, true)
}

func scanJSON(b []byte, maxDepth int, otlp bool) error {
	var (
		// opensValue[i] tells whether the i-th open bracket is the object
		// of an arrayValue or kvlistValue.
		opensValue = make([]bool, 0, 32)
		valueLevel int
		pending    bool // the next value is that of an arrayValue or kvlistValue key
	)
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case ' ', '\t', '\n', '\r', ':', ',':
		case '"':
			start, end := i+1, i+1
			for {
				k := bytes.IndexByte(b[end:], '"')
				if k < 0 {
					return nil
				}
				end += k
				backslashes := 0
				for p := end - 1; p >= start && b[p] == '\\'; p-- {
					backslashes++
				}
				if backslashes%2 == 0 {
					break
				}
				end++
			}
			i = end
			pending = false
			if otlp && isKey(b[i+1:]) {
				key := b[start:end]
				pending = opensAnyValueLevel(key, bytes.IndexByte(key, '\\') >= 0)
			}
		case '{', '[':
			if len(opensValue) >= maxDepth {
				return &DepthError{What: "JSON objects and arrays", Limit: maxDepth}
			}
			level := pending && c == '{'
			pending = false
			opensValue = append(opensValue, level)
			if level {
				if valueLevel++; valueLevel > MaxAnyValueDepth {
					return errAnyValueTooDeep
				}
			}
		case '}', ']':
			if len(opensValue) == 0 {
				return nil
			}
			if opensValue[len(opensValue)-1] {
				valueLevel--
			}
			opensValue = opensValue[:len(opensValue)-1]
			pending = false
		default:
			pending = false
		}
	}
	return nil
}

// isKey reports whether the string that ended just before rest is an
// object key: the next character that is not white space is a colon.
func isKey(rest []byte) bool {
	for _, c := range rest {
		switch c {
		case ' ', '\t', '\n', '\r':
		case ':':
			return true
		default:
			return false
		}
	}
	return false
}

// opensAnyValueLevel reports whether key (without quotes) names an OTLP
// value that nests: pdata accepts the camelCase and snake_case spellings,
// escaped or not.
func opensAnyValueLevel(key []byte, escaped bool) bool {
	if escaped {
		var k string
		if err := json.Unmarshal(append(append([]byte{'"'}, key...), '"'), &k); err != nil {
			return false
		}
		key = []byte(k)
	}
	return string(key) == "arrayValue" || string(key) == "kvlistValue" ||
		string(key) == "array_value" || string(key) == "kvlist_value"
}
