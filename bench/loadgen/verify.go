package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Querier runs PromQL against a Prometheus-compatible HTTP API.
type Querier struct {
	api v1.API
}

// NewQuerier talks to the query API under base, e.g. http://127.0.0.1:9090.
func NewQuerier(base string) (*Querier, error) {
	c, err := api.NewClient(api.Config{Address: base})
	if err != nil {
		return nil, fmt.Errorf("query client for %s: %w", base, err)
	}
	return &Querier{api: v1.NewAPI(c)}, nil
}

// Instant runs an instant query at ts.
func (q *Querier) Instant(ctx context.Context, expr string, ts time.Time) (model.Value, error) {
	v, _, _, err := q.api.Query(ctx, expr, ts)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	return v, nil
}

// Range runs a range query.
func (q *Querier) Range(ctx context.Context, expr string, r v1.Range) (model.Value, error) {
	v, _, _, err := q.api.QueryRange(ctx, expr, r)
	if err != nil {
		return nil, fmt.Errorf("query_range %s: %w", expr, err)
	}
	return v, nil
}

// Scalar runs an instant query whose answer is a single number (an
// aggregation without grouping); an empty answer is 0.
func (q *Querier) Scalar(ctx context.Context, expr string, ts time.Time) (float64, error) {
	v, err := q.Instant(ctx, expr, ts)
	if err != nil {
		return 0, err
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return 0, fmt.Errorf("query %s: want a vector, got %s", expr, v.Type())
	}
	switch len(vec) {
	case 0:
		return 0, nil
	case 1:
		return float64(vec[0].Value), nil
	}
	return 0, fmt.Errorf("query %s: want one element, got %d", expr, len(vec))
}

// Check is one verification query with the value it must return.
type Check struct {
	Query string
	Want  float64
}

// Checks are the queries that prove a target holds p, cheap enough to run
// on a million series: the number of series with a sample in the last
// round (without churn, every series), and for metric 0 — 1/Metrics of
// the data — the number of series and of samples within the window and the
// sum of all their values. A function over several metric names at once
// is avoided: it drops the names and Prometheus 2 then refuses the
// duplicate label sets.
func (p *Payload) Checks() []Check {
	window := p.Config.Interval*time.Duration(p.Config.Rounds) + time.Minute
	sel := fmt.Sprintf("%s[%s]", MetricName(0), model.Duration(window))
	cs := []Check{
		{Query: fmt.Sprintf("sum(count_over_time(%s))", sel), Want: float64(p.SamplesPerMetric[0])},
		{Query: fmt.Sprintf("count(count_over_time(%s))", sel), Want: float64(p.SeriesPerMetric[0])},
		{Query: fmt.Sprintf("sum(sum_over_time(%s))", sel), Want: p.ValueSum},
	}
	return cs
}

// HeadSeries reads the number of series a target holds from its
// /api/v1/status/tsdb: headStats.numSeries in Prometheus and Vigil,
// totalSeries in VictoriaMetrics. Counting a million series by PromQL takes
// longer than the rest of a run.
func HeadSeries(ctx context.Context, base string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/status/tsdb", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("tsdb status: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			HeadStats *struct {
				NumSeries int `json:"numSeries"`
			} `json:"headStats"`
			TotalSeries *int `json:"totalSeries"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, fmt.Errorf("tsdb status: %s: %w", resp.Status, err)
	}
	switch {
	case body.Data.HeadStats != nil:
		return body.Data.HeadStats.NumSeries, nil
	case body.Data.TotalSeries != nil:
		return *body.Data.TotalSeries, nil
	}
	return 0, fmt.Errorf("tsdb status of %s has neither headStats.numSeries nor totalSeries", base)
}

// Verify runs p's checks at the time of the last round, compares the
// series the target at base holds with those written, and returns every
// mismatch in one error.
func Verify(ctx context.Context, q *Querier, base string, p *Payload) error {
	var bad []string
	n, err := HeadSeries(ctx, base)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if n != p.ActiveSeries {
		bad = append(bad, fmt.Sprintf("%d series stored, want %d", n, p.ActiveSeries))
	}
	for _, c := range p.Checks() {
		got, err := q.Scalar(ctx, c.Query, p.Last())
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if got != c.Want {
			bad = append(bad, fmt.Sprintf("%s = %g, want %g", c.Query, got, c.Want))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("verify: %d of %d checks failed: %s", len(bad), len(p.Checks())+1, strings.Join(bad, "; "))
	}
	return nil
}
