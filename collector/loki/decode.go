package loki

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"google.golang.org/protobuf/encoding/protowire"
)

// Stream is one Loki stream: a label set and its entries.
type Stream struct {
	Labels  labels.Labels
	Entries []Entry
}

// Entry is one log line.
type Entry struct {
	Time     time.Time
	Line     string
	Metadata map[string]string // structured metadata
}

// DecodeProto decodes a logproto.PushRequest as Promtail, Alloy and Fluent
// Bit send it (snappy decompression happens before).
//
//	PushRequest   { repeated StreamAdapter streams = 1; }
//	StreamAdapter { string labels = 1; repeated EntryAdapter entries = 2; uint64 hash = 3; }
//	EntryAdapter  { Timestamp timestamp = 1; string line = 2; repeated LabelPairAdapter structuredMetadata = 3; ... }
//	Timestamp     { int64 seconds = 1; int32 nanos = 2; }
func DecodeProto(b []byte) ([]Stream, error) {
	var out []Stream
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if num != 1 {
			return nil
		}
		if typ != protowire.BytesType {
			return fmt.Errorf("streams[%d]: wrong wire type %d", len(out), typ)
		}
		s, err := decodeStream(v)
		if err != nil {
			return fmt.Errorf("streams[%d]: %w", len(out), err)
		}
		out = append(out, s)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("PushRequest: %w", err)
	}
	return out, nil
}

func decodeStream(b []byte) (Stream, error) {
	var s Stream
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch num {
		case 1:
			if typ != protowire.BytesType {
				return errors.New("labels: wrong wire type")
			}
			ls, err := labelParser.ParseMetric(string(v))
			if err != nil {
				return fmt.Errorf("labels %q: %w", v, err)
			}
			s.Labels = ls
		case 2:
			if typ != protowire.BytesType {
				return errors.New("entries: wrong wire type")
			}
			e, err := decodeEntry(v)
			if err != nil {
				return fmt.Errorf("entries[%d]: %w", len(s.Entries), err)
			}
			s.Entries = append(s.Entries, e)
		}
		return nil
	})
	return s, err
}

func decodeEntry(b []byte) (Entry, error) {
	var e Entry
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch num {
		case 1:
			if typ != protowire.BytesType {
				return errors.New("timestamp: wrong wire type")
			}
			var sec, nsec int64
			if err := fields(v, func(n protowire.Number, t protowire.Type, _ []byte, x uint64) error {
				if t != protowire.VarintType {
					return nil
				}
				switch n {
				case 1:
					sec = int64(x)
				case 2:
					nsec = int64(int32(x))
				}
				return nil
			}); err != nil {
				return fmt.Errorf("timestamp: %w", err)
			}
			e.Time = time.Unix(sec, nsec)
		case 2:
			if typ != protowire.BytesType {
				return errors.New("line: wrong wire type")
			}
			e.Line = string(v)
		case 3:
			if typ != protowire.BytesType {
				return errors.New("structuredMetadata: wrong wire type")
			}
			var name, value string
			if err := fields(v, func(n protowire.Number, t protowire.Type, p []byte, _ uint64) error {
				if t == protowire.BytesType && n == 1 {
					name = string(p)
				} else if t == protowire.BytesType && n == 2 {
					value = string(p)
				}
				return nil
			}); err != nil {
				return fmt.Errorf("structuredMetadata: %w", err)
			}
			if e.Metadata == nil {
				e.Metadata = map[string]string{}
			}
			e.Metadata[name] = value
		}
		return nil
	})
	return e, err
}

// fields calls fn for each field of a message with its raw bytes (for
// length-delimited fields) or varint value.
func fields(b []byte, fn func(num protowire.Number, typ protowire.Type, bytes []byte, varint uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var (
			v []byte
			x uint64
		)
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, typ, v, x); err != nil {
			return err
		}
	}
	return nil
}

// jsonPush is Loki's JSON push body.
type jsonPush struct {
	Streams []struct {
		Stream map[string]string `json:"stream"`
		Values []json.RawMessage `json:"values"`
	} `json:"streams"`
}

// DecodeJSON decodes Loki's JSON push format:
//
//	{"streams": [{"stream": {"app": "x"}, "values": [["<unix ns>", "line", {"trace_id": "..."}]]}]}
func DecodeJSON(b []byte) ([]Stream, error) {
	var p jsonPush
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("push body: %w", err)
	}
	out := make([]Stream, 0, len(p.Streams))
	for i, js := range p.Streams {
		s := Stream{Labels: labels.FromMap(js.Stream)}
		for j, raw := range js.Values {
			var tuple []json.RawMessage
			if err := json.Unmarshal(raw, &tuple); err != nil || len(tuple) < 2 || len(tuple) > 3 {
				return nil, fmt.Errorf("streams[%d].values[%d]: want [\"<unix epoch in nanoseconds>\", \"<log line>\", {optional structured metadata}]", i, j)
			}
			var ts, line string
			if err := json.Unmarshal(tuple[0], &ts); err != nil {
				return nil, fmt.Errorf("streams[%d].values[%d]: timestamp must be a string of nanoseconds: %w", i, j, err)
			}
			ns, err := strconv.ParseInt(ts, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("streams[%d].values[%d]: timestamp %q is not a number of nanoseconds", i, j, ts)
			}
			if err := json.Unmarshal(tuple[1], &line); err != nil {
				return nil, fmt.Errorf("streams[%d].values[%d]: log line must be a string: %w", i, j, err)
			}
			e := Entry{Time: time.Unix(0, ns), Line: line}
			if len(tuple) == 3 {
				if err := json.Unmarshal(tuple[2], &e.Metadata); err != nil {
					return nil, fmt.Errorf("streams[%d].values[%d]: structured metadata must be an object of strings: %w", i, j, err)
				}
			}
			s.Entries = append(s.Entries, e)
		}
		out = append(out, s)
	}
	return out, nil
}

var labelParser = parser.NewParser(parser.Options{})

// EncodeProto writes streams as a logproto.PushRequest (uncompressed; a
// push body is snappy-compressed): the inverse of DecodeProto.
func EncodeProto(streams []Stream) []byte {
	var req, s, en, ts, kv []byte
	for _, st := range streams {
		s = protowire.AppendTag(s[:0], 1, protowire.BytesType)
		s = protowire.AppendString(s, st.Labels.String())
		for _, e := range st.Entries {
			ts = protowire.AppendTag(ts[:0], 1, protowire.VarintType)
			ts = protowire.AppendVarint(ts, uint64(e.Time.Unix()))
			ts = protowire.AppendTag(ts, 2, protowire.VarintType)
			ts = protowire.AppendVarint(ts, uint64(e.Time.Nanosecond()))
			en = protowire.AppendTag(en[:0], 1, protowire.BytesType)
			en = protowire.AppendBytes(en, ts)
			en = protowire.AppendTag(en, 2, protowire.BytesType)
			en = protowire.AppendString(en, e.Line)
			keys := make([]string, 0, len(e.Metadata))
			for k := range e.Metadata {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				kv = protowire.AppendTag(kv[:0], 1, protowire.BytesType)
				kv = protowire.AppendString(kv, k)
				kv = protowire.AppendTag(kv, 2, protowire.BytesType)
				kv = protowire.AppendString(kv, e.Metadata[k])
				en = protowire.AppendTag(en, 3, protowire.BytesType)
				en = protowire.AppendBytes(en, kv)
			}
			s = protowire.AppendTag(s, 2, protowire.BytesType)
			s = protowire.AppendBytes(s, en)
		}
		req = protowire.AppendTag(req, 1, protowire.BytesType)
		req = protowire.AppendBytes(req, s)
	}
	return req
}
