package hotpath

import (
	"context"
	"fmt"
	"slices"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/collector"
	"github.com/vigilhq/vigil/collector/derived"
	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/internal/semconv"
)

// MayWriteDerived names who writes in ctx and whether they may write the series
// Vigil derives itself (semconv.Derived): Vigil's own generators always
// may; an ingest request only when the principal it was authenticated as
// is listed in ingest.accept_derived_series_from. Without authentication
// every request is "anonymous".
func (p *Pipeline) MayWriteDerived(ctx context.Context) (writer string, ok bool) {
	if derived.Own(ctx) {
		return "vigil", true
	}
	pr, ok := auth.FromContext(ctx)
	if !ok {
		pr = auth.Anonymous
	}
	return pr.Name, slices.Contains(p.cfg.AcceptDerivedSeriesFrom, pr.Name)
}

var _ storage.ExemplarAppenderV2 = (*derivedGuard)(nil)

// derivedGuard refuses the samples of derived series from a writer that
// may not send them. An append by reference alone passes: the series
// cache never holds the reference of a derived series (CacheRef), so such
// an append is of a series that passed here before.
type derivedGuard struct {
	storage.ExemplarAppenderV2
	writer string
}

func (g *derivedGuard) check(ls labels.Labels) error {
	if name := ls.Get(model.MetricNameLabel); semconv.Derived(name) {
		return fmt.Errorf("%w: %s is Vigil's own (span metrics, service graph, log metrics, deployments, verdicts, alerts, deploy-health recordings); %q may not write it unless listed in ingest.accept_derived_series_from", collector.ErrDerivedSeries, name, g.writer)
	}
	return nil
}

func (g *derivedGuard) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AOptions) (storage.SeriesRef, error) {
	if err := g.check(ls); err != nil {
		return 0, err
	}
	return g.ExemplarAppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
}

func (g *derivedGuard) AppendExemplars(ref storage.SeriesRef, ls labels.Labels, es []exemplar.Exemplar) (storage.SeriesRef, error) {
	if err := g.check(ls); err != nil {
		return 0, err
	}
	return g.ExemplarAppenderV2.AppendExemplars(ref, ls, es)
}
