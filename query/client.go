package query

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Client queries a Vigil (or any Prometheus-compatible API) over HTTP. It
// is the client_golang API client; this wrapper only fixes the options the
// CLI needs and classifies errors.
type Client struct {
	api v1.API
}

// NewClient builds a client for the server at address (e.g. http://127.0.0.1:9400).
func NewClient(address string, rt http.RoundTripper) (*Client, error) {
	c, err := api.NewClient(api.Config{Address: address, RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("query client for %s: %w", address, err)
	}
	return &Client{api: v1.NewAPI(c)}, nil
}

// Result is a query's value and the warnings the server attached.
type Result struct {
	Value    model.Value
	Warnings []string
	Infos    []string
}

// Instant evaluates expr at ts.
func (c *Client) Instant(ctx context.Context, expr string, ts time.Time, timeout time.Duration) (Result, error) {
	var opts []v1.Option
	if timeout > 0 {
		opts = append(opts, v1.WithTimeout(timeout))
	}
	v, w, infos, err := c.api.Query(ctx, expr, ts, opts...)
	return Result{Value: v, Warnings: w, Infos: infos}, err
}

// Range evaluates expr over [start, end] every step.
func (c *Client) Range(ctx context.Context, expr string, start, end time.Time, step, timeout time.Duration) (Result, error) {
	var opts []v1.Option
	if timeout > 0 {
		opts = append(opts, v1.WithTimeout(timeout))
	}
	v, w, infos, err := c.api.QueryRange(ctx, expr, v1.Range{Start: start, End: end, Step: step}, opts...)
	return Result{Value: v, Warnings: w, Infos: infos}, err
}

// Rejected reports whether err is the server refusing the query (bad
// syntax, execution error, limits) rather than the server being unreachable.
func Rejected(err error) bool {
	var apiErr *v1.Error
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.Type {
	case v1.ErrBadData, v1.ErrExec, v1.ErrTimeout, v1.ErrCanceled:
		return true
	}
	return false
}
