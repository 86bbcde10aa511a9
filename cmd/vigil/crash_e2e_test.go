package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/prompb"

	"github.com/vigilhq/vigil/internal/peers"
)

// TestKill9LosesNothingAcknowledged: four clients remote-write a known
// sequence; Vigil is killed with SIGKILL mid-stream and restarted on the
// same data directory; every sample that got a 2xx is queryable afterwards.
func TestKill9LosesNothingAcknowledged(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	v := peers.StartVigil(t, data)

	const (
		senders      = 4
		seriesPerReq = 100
	)
	base := time.Now().Add(-time.Minute).UnixMilli()
	// acked[s] holds, per sender, the sequence numbers of its acknowledged
	// requests; request k of sender s writes value k at base+k ms to 100 series.
	acked := make([][]int, senders)
	var sent [senders]int
	var wg sync.WaitGroup
	killed := make(chan struct{})
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			api, err := remoteapi.NewAPI(v.URL(), remoteapi.WithAPIPath("/api/v1/write"), remoteapi.WithAPINoRetryOnRateLimit(),
				remoteapi.WithAPIBackoff(remoteapi.BackoffConfig{Min: time.Millisecond, Max: time.Millisecond, MaxRetries: 0}))
			if err != nil {
				t.Error(err)
				return
			}
			for k := 0; ; k++ {
				select {
				case <-killed:
					return
				default:
				}
				req := &prompb.WriteRequest{}
				for i := range seriesPerReq {
					req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
						Labels:  []prompb.Label{{Name: "__name__", Value: "crash_test"}, {Name: "sender", Value: strconv.Itoa(s)}, {Name: "series", Value: strconv.Itoa(i)}},
						Samples: []prompb.Sample{{Value: float64(k), Timestamp: base + int64(k)}},
					})
				}
				sent[s]++
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := api.Write(ctx, remoteapi.WriteV1MessageType, req)
				cancel()
				if err == nil {
					acked[s] = append(acked[s], k)
				}
			}
		}()
	}
	time.Sleep(3 * time.Second)
	v.Kill()
	close(killed)
	wg.Wait()

	var totalSent, totalAcked int
	for s := range senders {
		totalSent += sent[s] * seriesPerReq
		totalAcked += len(acked[s]) * seriesPerReq
	}
	if totalAcked == 0 {
		t.Fatal("nothing was acknowledged before the kill")
	}

	v = peers.StartVigil(t, data)
	// Every acknowledged request's 100 samples are there: count per sender
	// over the whole range, and each acknowledged value is found.
	end := time.UnixMilli(base + 60_000)
	found := 0
	for s := range senders {
		q := fmt.Sprintf(`sum(count_over_time(crash_test{sender="%d"}[2m]))`, s)
		var n int
		for _, val := range vectorOf(t, v.URL(), q, end) {
			n, _ = strconv.Atoi(val)
		}
		want := len(acked[s]) * seriesPerReq
		// A request cut by the kill may have reached the WAL without its 2xx
		// reaching the client: more found than acknowledged is fine, less is loss.
		if n < want {
			t.Errorf("sender %d: %d samples found, %d acknowledged: %d acknowledged samples lost", s, n, want, want-n)
		}
		found += n
		if len(acked[s]) > 0 {
			last := acked[s][len(acked[s])-1]
			q := fmt.Sprintf(`count(crash_test{sender="%d"} == %d)`, s, last)
			d := instantAt(t, v.URL(), q, time.UnixMilli(base+int64(last)))
			if want := fmt.Sprintf(`"%d"]`, seriesPerReq); !contains(string(d.Result), want) {
				t.Errorf("sender %d: the last acknowledged request (%d) is not all there: %s", s, last, d.Result)
			}
		}
	}
	t.Logf("sent %d samples, acknowledged %d, found %d after kill -9 and restart", totalSent, totalAcked, found)
}
