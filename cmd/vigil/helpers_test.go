package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/prompb"

	"github.com/vigilhq/vigil/internal/peers"
)

// runVigil runs the built vigil binary and returns its output and exit code.
func runVigil(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	bin := peers.VigilBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run vigil %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// apiResponse is the Prometheus API envelope.
type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
}

type queryData struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

// apiGet calls a Prometheus API endpoint with GET and decodes the envelope.
func apiGet(t testing.TB, base, path string, params url.Values) (int, apiResponse) {
	t.Helper()
	resp, err := http.Get(base + path + "?" + params.Encode())
	if err != nil {
		t.Fatalf("GET %s%s: %v", base, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("GET %s%s?%s: status %d, body is not JSON: %v\n%s", base, path, params.Encode(), resp.StatusCode, err, body)
	}
	return resp.StatusCode, r
}

// instant runs an instant query and returns its data, failing on error.
func instant(t testing.TB, base, q string, ts time.Time) queryData {
	t.Helper()
	code, r := apiGet(t, base, "/api/v1/query", url.Values{"query": {q}, "time": {fmt.Sprint(ts.Unix())}})
	if code != 200 || r.Status != "success" {
		t.Fatalf("query %q on %s: %d %s: %s", q, base, code, r.ErrorType, r.Error)
	}
	var d queryData
	if err := json.Unmarshal(r.Data, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func rangeQuery(t *testing.T, base, q string, start, end time.Time, step time.Duration) queryData {
	t.Helper()
	code, r := apiGet(t, base, "/api/v1/query_range", url.Values{
		"query": {q}, "start": {fmt.Sprint(start.Unix())}, "end": {fmt.Sprint(end.Unix())}, "step": {fmt.Sprint(step.Seconds())},
	})
	if code != 200 || r.Status != "success" {
		t.Fatalf("range query %q on %s: %d %s: %s", q, base, code, r.ErrorType, r.Error)
	}
	var d queryData
	if err := json.Unmarshal(r.Data, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// remoteWrite sends a remote_write 1.0 request with client_golang's sender.
func remoteWrite(t *testing.T, base string, req *prompb.WriteRequest) {
	t.Helper()
	api, err := remoteapi.NewAPI(base, remoteapi.WithAPIPath("/api/v1/write"), remoteapi.WithAPINoRetryOnRateLimit(),
		remoteapi.WithAPIBackoff(remoteapi.BackoffConfig{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond, MaxRetries: 2}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := api.Write(ctx, remoteapi.WriteV1MessageType, req); err != nil {
		t.Fatalf("remote write to %s: %v", base, err)
	}
}

// eventually polls f until it returns true or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if f() {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
