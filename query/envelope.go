package query

import (
	"errors"
	"fmt"
	"net/http"

	jsoniter "github.com/json-iterator/go"
)

// EndpointFunc answers one request of an API endpoint that lives in another
// package (rules, alerts, deployments) with data to encode as JSON, or an
// error. Errors made with BadData answer 400 bad_data, NotFound 404
// not_found, Unavailable 503 unavailable; any other error 500 internal.
type EndpointFunc func(r *http.Request) (any, error)

// Endpoint wraps f in the Prometheus API envelope
// ({"status":"success","data":...} or {"status":"error","errorType":...,"error":...}),
// so endpoints outside this package answer exactly like the query API.
func Endpoint(f EndpointFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			writeError(w, &apiError{errBadData, fmt.Errorf("error parsing form values: %w", err)})
			return
		}
		data, err := f(r)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				ae = &apiError{errInternal, err}
			}
			writeError(w, ae)
			return
		}
		writeSuccess(w, nil, nil, func(s *jsoniter.Stream) { s.WriteVal(data) })
	})
}

// BadData marks err as the client's fault (400 bad_data).
func BadData(err error) error { return &apiError{errBadData, err} }

// NotFound marks err as a missing resource (404 not_found).
func NotFound(err error) error { return &apiError{errNotFound, err} }

// Unavailable marks err as a temporary condition (503 unavailable).
func Unavailable(err error) error { return &apiError{errUnavailable, err} }

func (e *apiError) Error() string { return e.err.Error() }
func (e *apiError) Unwrap() error { return e.err }
