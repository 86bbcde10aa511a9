package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/vigilhq/vigil/deploy/verdict"
)

// Client talks to the deploy API of a Vigil server: what `vigil verify`,
// `vigil deploy`, `vigil verdicts` and `vigil demo` use, and what a Go
// program driving a pipeline can use.
type Client struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:9400.
	URL string
	// Token, when set, is sent as a bearer token.
	Token string
	// HTTP is the client requests go through (http.DefaultClient when nil).
	HTTP *http.Client
}

// maxAnswerBytes bounds an answer read (a verdict with its evidence).
const maxAnswerBytes = 16 << 20

// APIError is an answer of the server other than success: the server was
// reached and refused the request (or failed it).
type APIError struct {
	// Code is the HTTP status.
	Code int
	// Type is the API's errorType (bad_data, not_found, unauthorized, ...).
	Type    string
	Message string
}

func (e *APIError) Error() string {
	if e.Type != "" {
		return fmt.Sprintf("%d %s: %s", e.Code, e.Type, e.Message)
	}
	return fmt.Sprintf("%d: %s", e.Code, e.Message)
}

// IsAPIError reports whether err is an answer of the server (as opposed to
// the server not being reached) and returns it.
func IsAPIError(err error) (*APIError, bool) {
	var ae *APIError
	ok := errors.As(err, &ae)
	return ae, ok
}

// Verify starts a verification, or joins the one running for the same
// request: POST /api/v1/verify.
func (c Client) Verify(ctx context.Context, r VerifyRequest) (VerifyStatus, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return VerifyStatus{}, fmt.Errorf("encode verify request: %w", err)
	}
	var st VerifyStatus
	_, err = c.call(ctx, http.MethodPost, "/api/v1/verify", nil, b, &st)
	return st, err
}

// Status polls a verification, advancing it: GET /api/v1/verify/{id}.
func (c Client) Status(ctx context.Context, id string) (VerifyStatus, error) {
	var st VerifyStatus
	_, err := c.call(ctx, http.MethodGet, "/api/v1/verify/"+url.PathEscape(id), nil, nil, &st)
	return st, err
}

// Record records a deployment (POST /api/v1/deployments); created is false
// when an event about the same service, environment and version updated a
// deployment already recorded.
func (c Client) Record(ctx context.Context, e Event) (d Deployment, created bool, err error) {
	b, err := json.Marshal(e)
	if err != nil {
		return d, false, fmt.Errorf("encode deployment: %w", err)
	}
	code, err := c.call(ctx, http.MethodPost, "/api/v1/deployments", nil, b, &d)
	return d, code == http.StatusCreated, err
}

// ListOptions select deployments or verdicts; zero values select all.
type ListOptions struct {
	Service     string
	Environment string
	Limit       int
}

func (o ListOptions) values() url.Values {
	v := url.Values{}
	if o.Service != "" {
		v.Set("service", o.Service)
	}
	if o.Environment != "" {
		v.Set("environment", o.Environment)
	}
	if o.Limit > 0 {
		v.Set("limit", strconv.Itoa(o.Limit))
	}
	return v
}

// Deployments lists recorded deployments, newest first: GET /api/v1/deployments.
func (c Client) Deployments(ctx context.Context, o ListOptions) ([]Deployment, error) {
	var out []Deployment
	_, err := c.call(ctx, http.MethodGet, "/api/v1/deployments", o.values(), nil, &out)
	return out, err
}

// Verdicts lists verdicts, running verifications first, then final ones
// newest first: GET /api/v1/verdicts (the server filters by service only).
func (c Client) Verdicts(ctx context.Context, o ListOptions) ([]verdict.Verdict, error) {
	q := o.values()
	q.Del("environment")
	var out []verdict.Verdict
	_, err := c.call(ctx, http.MethodGet, "/api/v1/verdicts", q, nil, &out)
	return out, err
}

// Verdict returns one verdict by its ID: GET /api/v1/verdicts/{id}.
func (c Client) Verdict(ctx context.Context, id string) (verdict.Verdict, error) {
	var v verdict.Verdict
	_, err := c.call(ctx, http.MethodGet, "/api/v1/verdicts/"+url.PathEscape(id), nil, nil, &v)
	return v, err
}

// call sends a request and decodes the data of a success envelope into
// out; it returns the HTTP status.
func (c Client) call(ctx context.Context, method, path string, query url.Values, body []byte, out any) (int, error) {
	return c.callAs(ctx, method, path, query, "application/json", body, out)
}

// callAs is call with the body's content type.
func (c Client) callAs(ctx context.Context, method, path string, query url.Values, contentType string, body []byte, out any) (int, error) {
	if c.URL == "" {
		return 0, errors.New("no server URL")
	}
	u := strings.TrimSuffix(c.URL, "/") + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, fmt.Errorf("request %s: %w", u, err)
	}
	if body != nil && contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("reach %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("read answer of %s: %w", u, err)
	}
	var env struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		if resp.StatusCode/100 != 2 {
			return resp.StatusCode, &APIError{Code: resp.StatusCode, Message: fmt.Sprintf("%s %s: %.200s", method, u, bytes.TrimSpace(b))}
		}
		return resp.StatusCode, fmt.Errorf("%s %s: %s, body is not JSON: %.200s", method, u, resp.Status, b)
	}
	// The data is decoded even with an error: some answers carry both.
	if out != nil && len(env.Data) > 0 && string(env.Data) != "null" {
		if err := json.Unmarshal(env.Data, out); err != nil && resp.StatusCode/100 == 2 {
			return resp.StatusCode, fmt.Errorf("%s %s: decode answer: %w", method, u, err)
		}
	}
	if resp.StatusCode/100 != 2 || env.Status != "success" {
		return resp.StatusCode, &APIError{Code: resp.StatusCode, Type: env.ErrorType, Message: env.Error}
	}
	return resp.StatusCode, nil
}
