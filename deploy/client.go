package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Client talks to the verify API of a Vigil server: what `vigil verify`
// and `vigil demo` use, and what a Go program driving a pipeline can use.
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

// Verify starts a verification, or joins the one running for the same
// request: POST /api/v1/verify.
func (c Client) Verify(ctx context.Context, r VerifyRequest) (VerifyStatus, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return VerifyStatus{}, fmt.Errorf("encode verify request: %w", err)
	}
	return c.do(ctx, http.MethodPost, "/api/v1/verify", b)
}

// Status polls a verification, advancing it: GET /api/v1/verify/{id}.
func (c Client) Status(ctx context.Context, id string) (VerifyStatus, error) {
	return c.do(ctx, http.MethodGet, "/api/v1/verify/"+id, nil)
}

func (c Client) do(ctx context.Context, method, path string, body []byte) (VerifyStatus, error) {
	var env struct {
		Status string       `json:"status"`
		Error  string       `json:"error"`
		Data   VerifyStatus `json:"data"`
	}
	url := strings.TrimSuffix(c.URL, "/") + path
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return env.Data, err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return env.Data, fmt.Errorf("reach %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return env.Data, fmt.Errorf("read answer of %s: %w", url, err)
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return env.Data, fmt.Errorf("%s %s: %s, body is not JSON: %.200s", method, url, resp.Status, b)
	}
	if resp.StatusCode/100 != 2 || env.Status != "success" {
		return env.Data, fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, env.Error)
	}
	return env.Data, nil
}
