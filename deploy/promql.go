package deploy

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
)

// PromQL runs the verdict engine's range queries on the embedded engine,
// in-process.
type PromQL struct {
	Engine    *promql.Engine
	Queryable storage.Queryable
}

// QueryRange implements verdict.Querier: the float values of every series
// in the result, in time order per series.
func (p PromQL) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]float64, error) {
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
