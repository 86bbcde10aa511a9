package derived

import (
	"context"
	"fmt"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/internal/semconv"
)

// Writer is where the generators of derived series (span metrics, the
// service graph, log metrics, stream aggregation outputs) write: out, with
// the collector label (semconv.LabelCollector) set to the replica name on
// every series when one is configured (collector.replica), so that the
// replicas of a scaled-out collector tier write distinct series that
// queries sum, rather than interleaving their counters in one. Its
// transactions are marked as Vigil's own (Own), which the hot path lets
// write derived series whatever ingest.accept_derived_series_from says.
type Writer struct {
	out     storage.AppendableV2
	replica string
}

// NewWriter writes to out with the replica label replica ("" adds none: a
// single Vigil's output is unchanged).
func NewWriter(out storage.AppendableV2, replica string) *Writer {
	return &Writer{out: out, replica: replica}
}

// Replica is the replica name the writer labels series with ("" for none).
func (w *Writer) Replica() string { return w.replica }

// AppenderV2 starts a transaction marked as Vigil's own.
func (w *Writer) AppenderV2(ctx context.Context) storage.AppenderV2 {
	inner := w.out.AppenderV2(context.WithValue(ctx, ownKey{}, true))
	if w.replica == "" {
		return inner
	}
	return &replicaAppender{AppenderV2: inner, replica: w.replica, b: labels.NewBuilder(labels.EmptyLabels())}
}

type ownKey struct{}

// Own reports whether ctx is a transaction of a Vigil generator (from a
// Writer) rather than of an ingest request.
func Own(ctx context.Context) bool {
	own, _ := ctx.Value(ownKey{}).(bool)
	return own
}

var _ storage.ExemplarAppenderV2 = (*replicaAppender)(nil)

// replicaAppender sets the collector label on every series appended by labels.
type replicaAppender struct {
	storage.AppenderV2
	replica string
	b       *labels.Builder
}

func (a *replicaAppender) label(ls labels.Labels) labels.Labels {
	if ls.IsEmpty() {
		return ls // an append by reference
	}
	a.b.Reset(ls)
	a.b.Set(semconv.LabelCollector, a.replica)
	return a.b.Labels()
}

func (a *replicaAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AOptions) (storage.SeriesRef, error) {
	return a.AppenderV2.Append(ref, a.label(ls), st, t, v, h, fh, opts)
}

// AppendExemplars implements storage.ExemplarAppenderV2.
func (a *replicaAppender) AppendExemplars(ref storage.SeriesRef, ls labels.Labels, es []exemplar.Exemplar) (storage.SeriesRef, error) {
	ea, ok := a.AppenderV2.(storage.ExemplarAppenderV2)
	if !ok {
		return 0, fmt.Errorf("storage appender %T does not take exemplars", a.AppenderV2)
	}
	return ea.AppendExemplars(ref, a.label(ls), es)
}
