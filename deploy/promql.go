package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/deploy/verdict"
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

// QueryRange implements verdict.Querier: the float points of every series
// in the result, in time order per series.
func (p PromQL) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]verdict.Point, error) {
	m, err := p.QueryMatrix(ctx, expr, start, end, step)
	if err != nil {
		return nil, err
	}
	var out []verdict.Point
	for _, s := range m {
		for _, p := range s.Floats {
			out = append(out, verdict.Point{T: p.T, V: p.F})
		}
	}
	return out, nil
}

// QueryMatrix runs a range query and returns its series with their labels
// and float points (what the web UI draws), copied out of the engine's
// pooled result.
func (p PromQL) QueryMatrix(ctx context.Context, expr string, start, end time.Time, step time.Duration) (promql.Matrix, error) {
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
	// q.Close gives the points back to the engine's pool.
	out := make(promql.Matrix, len(m))
	for i, s := range m {
		out[i] = promql.Series{Metric: s.Metric, Floats: slices.Clone(s.Floats)}
	}
	return out, nil
}

// LabelSets runs an instant query and returns the labels of its series
// (catalog.Querier).
func (p PromQL) LabelSets(ctx context.Context, expr string) ([]map[string]string, error) {
	now := time.Now()
	m, err := p.QueryMatrix(ctx, expr, now, now, time.Second)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]string, 0, len(m))
	for _, s := range m {
		out = append(out, s.Metric.Map())
	}
	return out, nil
}
