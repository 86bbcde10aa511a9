package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// SenderConfig says where and how hard to send.
type SenderConfig struct {
	// URL is the remote_write endpoint, e.g. http://127.0.0.1:9090/api/v1/write.
	URL string
	// Senders is the number of concurrent connections.
	Senders int
	// Retries is how often a request answered 5xx or 429, or failed in
	// transport, is sent again (after 10 ms, doubling) before it counts as failed.
	Retries int
	// Timeout bounds one request.
	Timeout time.Duration
	// Headers replace the remote_write 1.0 headers (snappy, protobuf,
	// version 0.1.0) when set, e.g. OTLPHeaders() for OTLP/HTTP.
	Headers http.Header
}

// Validate reports the first invalid field.
func (c SenderConfig) Validate() error {
	switch {
	case c.URL == "":
		return errors.New("remote_write URL is empty")
	case c.Senders < 1:
		return fmt.Errorf("senders must be at least 1, got %d", c.Senders)
	case c.Retries < 0:
		return fmt.Errorf("retries must not be negative, got %d", c.Retries)
	case c.Timeout <= 0:
		return fmt.Errorf("timeout must be positive, got %s", c.Timeout)
	}
	return nil
}

// RoundResult is the timing of one round.
type RoundResult struct {
	Requests int
	Elapsed  time.Duration
}

// Result is what a replay did.
type Result struct {
	Rounds   []RoundResult
	Elapsed  time.Duration
	Requests int
	Retried  int
	// Failed counts requests that were refused for good; FirstError quotes one.
	Failed     int
	FirstError string
}

// Replay sends every request of p to the endpoint with c.Senders
// concurrent senders, as fast as the endpoint answers. Rounds are sent one
// after the other, so that the samples of a series arrive in time order as
// they do from a Prometheus; within a round requests are shared among the
// senders.
func Replay(ctx context.Context, c SenderConfig, p *Payload) (Result, error) {
	return ReplayRounds(ctx, c, p.Rounds)
}

// ReplayRounds sends bodies round after round, each round shared among
// c.Senders concurrent senders.
func ReplayRounds(ctx context.Context, c SenderConfig, rounds [][][]byte) (Result, error) {
	if err := c.Validate(); err != nil {
		return Result{}, fmt.Errorf("invalid sender: %w", err)
	}
	client := &http.Client{
		Timeout: c.Timeout,
		Transport: &http.Transport{
			MaxIdleConns:        c.Senders,
			MaxIdleConnsPerHost: c.Senders,
			DisableCompression:  true,
		},
	}
	defer client.CloseIdleConnections()
	var res Result
	var retried, failed atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	for _, round := range rounds {
		rs := time.Now()
		next := atomic.Int64{}
		var wg sync.WaitGroup
		for range c.Senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					j := int(next.Add(1)) - 1
					if j >= len(round) || ctx.Err() != nil {
						return
					}
					n, err := send(ctx, client, c, round[j])
					retried.Add(int64(n))
					if err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
				}
			}()
		}
		wg.Wait()
		if err := ctx.Err(); err != nil {
			return res, err
		}
		res.Rounds = append(res.Rounds, RoundResult{Requests: len(round), Elapsed: time.Since(rs)})
		res.Requests += len(round)
	}
	res.Elapsed = time.Since(start)
	res.Retried = int(retried.Load())
	res.Failed = int(failed.Load())
	if v, ok := firstErr.Load().(string); ok {
		res.FirstError = v
	}
	return res, nil
}

// send posts one body, retrying what may succeed later; it returns the
// number of retries.
func send(ctx context.Context, client *http.Client, c SenderConfig, body []byte) (int, error) {
	backoff := 10 * time.Millisecond
	var err error
	for attempt := 0; ; attempt++ {
		var retry bool
		retry, err = post(ctx, client, c.URL, c.Headers, body)
		if err == nil || !retry || attempt == c.Retries {
			return attempt, err
		}
		select {
		case <-ctx.Done():
			return attempt, ctx.Err()
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

func post(ctx context.Context, client *http.Client, url string, headers http.Header, body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	if headers != nil {
		req.Header = headers.Clone()
	} else {
		req.Header.Set("Content-Encoding", "snappy")
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	}
	req.Header.Set("User-Agent", "vigil-bench")
	resp, err := client.Do(req)
	if err != nil {
		return true, fmt.Errorf("post %s: %w", url, err)
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		return false, nil
	}
	return resp.StatusCode/100 == 5 || resp.StatusCode == http.StatusTooManyRequests,
		fmt.Errorf("post %s: %s: %s", url, resp.Status, bytes.TrimSpace(msg))
}
