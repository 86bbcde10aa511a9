package deploy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/query"
)

// PromQL runs the verdict engine's range queries on the embedded engine,
// in-process, under the same limits as the query API: the engine's
// query.max_samples and query.timeout, and at most query.MaxPointsPerSeries
// points per series.
type PromQL struct {
	Engine    *query.Engine
	Queryable storage.Queryable
}

// QueryRange implements verdict.Querier: the float values of every series
// in the result, in time order per series.
func (p PromQL) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]float64, error) {
	if p.Engine == nil || p.Engine.Engine == nil {
		return nil, errors.New("query: no PromQL engine")
	}
	if step <= 0 {
		return nil, fmt.Errorf("query %s: step must be positive, got %s", expr, step)
	}
	if n := end.Sub(start) / step; n > query.MaxPointsPerSeries {
		return nil, fmt.Errorf("query %s: %d points per series exceed the maximum resolution of %d", expr, n, query.MaxPointsPerSeries)
	}
	q, err := p.Engine.NewRangeQuery(ctx, p.Queryable, nil, expr, start, end, step)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, res.Err)
	}
	m, err := res.Matrix()
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	var out []float64
	for _, s := range m {
		for _, p := range s.Floats {
			out = append(out, p.F)
		}
	}
	return out, nil
}
