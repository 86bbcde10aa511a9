package remotewrite

import (
	"fmt"
	"math"

	"github.com/prometheus/prometheus/model/histogram"
	"google.golang.org/protobuf/encoding/protowire"
)

// decodeHistogram reads a native histogram; remote_write 1.0 and 2.0 share
// field numbers 1–16 and 2.0 adds start_timestamp (17). A histogram whose
// count is a double is a float histogram, as in Prometheus.
func decodeHistogram(b []byte, v2 bool) (Histogram, error) {
	var (
		isFloat                    bool
		countInt, zeroCountInt     uint64
		countFloat, zeroCountFloat float64
		sum, zeroThreshold         float64
		schema                     int32
		negSpans, posSpans         []histogram.Span
		negDeltas, posDeltas       []int64
		negCounts, posCounts       []float64
		customValues               []float64
		resetHint                  uint64
		timestamp, startTimestamp  int64
	)
	for len(b) > 0 {
		num, typ, n, err := field(b)
		if err != nil {
			return Histogram{}, err
		}
		b = b[n:]
		if num == 17 && !v2 {
			num = 0 // start_timestamp is not a 1.0 field: skip it as unknown
		}
		switch num {
		case 1, 4, 6, 14, 15, 17:
			v, n, err := consumeVarint(b, num, typ)
			if err != nil {
				return Histogram{}, err
			}
			switch num {
			case 1: // oneof count: the last one wins and decides the histogram's kind
				countInt, countFloat, isFloat = v, 0, false
			case 4:
				schema = int32(protowire.DecodeZigZag(v & math.MaxUint32))
			case 6: // oneof zero_count: the last one wins
				zeroCountInt, zeroCountFloat = v, 0
			case 14:
				resetHint = v
			case 15:
				timestamp = int64(v)
			case 17:
				startTimestamp = int64(v)
			}
			b = b[n:]
		case 2, 3, 5, 7:
			v, n, err := consumeDouble(b, num, typ)
			if err != nil {
				return Histogram{}, err
			}
			switch num {
			case 2:
				countFloat, countInt, isFloat = v, 0, true
			case 3:
				sum = v
			case 5:
				zeroThreshold = v
			case 7:
				zeroCountFloat, zeroCountInt = v, 0
			}
			b = b[n:]
		case 8, 11:
			msg, n, err := consumeBytes(b, num, typ)
			if err != nil {
				return Histogram{}, err
			}
			sp, err := decodeSpan(msg)
			if err != nil {
				return Histogram{}, fmt.Errorf("span: %w", err)
			}
			if num == 8 {
				negSpans = append(negSpans, sp)
			} else {
				posSpans = append(posSpans, sp)
			}
			b = b[n:]
		case 9, 12:
			dst := &negDeltas
			if num == 12 {
				dst = &posDeltas
			}
			n, err := forEachPacked(b, num, typ, protowire.VarintType, func(v uint64) { *dst = append(*dst, protowire.DecodeZigZag(v)) })
			if err != nil {
				return Histogram{}, err
			}
			b = b[n:]
		case 10, 13, 16:
			dst := &negCounts
			switch num {
			case 13:
				dst = &posCounts
			case 16:
				dst = &customValues
			}
			n, err := forEachPacked(b, num, typ, protowire.Fixed64Type, func(v uint64) { *dst = append(*dst, math.Float64frombits(v)) })
			if err != nil {
				return Histogram{}, err
			}
			b = b[n:]
		default:
			n, err := skip(b, num, typ)
			if err != nil {
				return Histogram{}, err
			}
			b = b[n:]
		}
	}
	out := Histogram{Timestamp: timestamp, StartTimestamp: startTimestamp}
	hint := counterResetHint(resetHint)
	if isFloat {
		out.FH = &histogram.FloatHistogram{
			CounterResetHint: hint,
			Schema:           schema,
			ZeroThreshold:    zeroThreshold,
			ZeroCount:        zeroCountFloat,
			Count:            countFloat,
			Sum:              sum,
			PositiveSpans:    posSpans,
			PositiveBuckets:  posCounts,
			NegativeSpans:    negSpans,
			NegativeBuckets:  negCounts,
			CustomValues:     customValues,
		}
		return out, nil
	}
	out.H = &histogram.Histogram{
		CounterResetHint: hint,
		Schema:           schema,
		ZeroThreshold:    zeroThreshold,
		ZeroCount:        zeroCountInt,
		Count:            countInt,
		Sum:              sum,
		PositiveSpans:    posSpans,
		PositiveBuckets:  posDeltas,
		NegativeSpans:    negSpans,
		NegativeBuckets:  negDeltas,
		CustomValues:     customValues,
	}
	return out, nil
}

func decodeSpan(b []byte) (histogram.Span, error) {
	var sp histogram.Span
	for len(b) > 0 {
		num, typ, n, err := field(b)
		if err != nil {
			return sp, err
		}
		b = b[n:]
		switch num {
		case 1, 2:
			v, n, err := consumeVarint(b, num, typ)
			if err != nil {
				return sp, err
			}
			if num == 1 {
				sp.Offset = int32(protowire.DecodeZigZag(v & math.MaxUint32))
			} else {
				sp.Length = uint32(v)
			}
			b = b[n:]
		default:
			n, err := skip(b, num, typ)
			if err != nil {
				return sp, err
			}
			b = b[n:]
		}
	}
	return sp, nil
}

func counterResetHint(v uint64) histogram.CounterResetHint {
	switch v {
	case 1:
		return histogram.CounterReset
	case 2:
		return histogram.NotCounterReset
	case 3:
		return histogram.GaugeType
	}
	return histogram.UnknownCounterReset
}
