package evidence

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type logLine struct {
	Body    string `json:"body"`
	TraceID string `json:"traceID,omitempty"`
}

type spanRef struct {
	TraceID string `json:"traceID"`
}

// store is the receiving side: rings fed by a Receiver that lets writer
// "collectors" in, behind a server that can fail its next requests.
type store struct {
	logs   *Rings[logLine]
	traces *Rings[spanRef]
	rcv    *Receiver
	url    string
	fail   atomic.Int32 // requests to fail after handling them (the answer is lost)
	down   atomic.Bool  // refuse without handling
	writer atomic.Value
}

func newStore(t *testing.T) *store {
	t.Helper()
	s := &store{logs: New[logLine]("error_logs", 100, 10, nil), traces: New[spanRef]("error_traces", 50, 10, nil)}
	s.writer.Store("collectors")
	s.rcv = NewReceiver(func(context.Context) (string, bool) {
		w := s.writer.Load().(string)
		return w, w == "collectors"
	}, 5*time.Second, nil, prometheus.NewRegistry(), s.logs, s.traces)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		rec := httptest.NewRecorder()
		s.rcv.ServeHTTP(rec, r)
		if s.fail.Load() > 0 {
			s.fail.Add(-1)
			http.Error(w, "answer lost", http.StatusBadGateway)
			return
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// replica is the sending side: rings that forward to the store.
type replica struct {
	logs   *Rings[logLine]
	traces *Rings[spanRef]
	out    *Outbox
	fwd    *Forwarder
}

func newReplica(t *testing.T, url, name string, queue int) *replica {
	t.Helper()
	r := &replica{logs: New[logLine]("error_logs", 100, 10, nil), traces: New[spanRef]("error_traces", 50, 10, nil)}
	r.out = NewOutbox(queue, prometheus.NewRegistry())
	r.logs.Forward(r.out)
	r.traces.Forward(r.out)
	cfg := DefaultForwardConfig()
	cfg.URL = url
	cfg.MaxBatch = 3
	fwd, err := NewForwarder(cfg, name, r.out, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	r.fwd = fwd
	return r
}

// TestForwardEvidence: what replicas add to their rings reaches the
// store's rings, keyed and timed as they saw it and naming the replica;
// a request whose answer was lost is retried without duplicating records;
// while the store is down records wait, bounded; the last flush on
// shutdown hands over what is left.
func TestForwardEvidence(t *testing.T) {
	s := newStore(t)
	a, b := newReplica(t, s.url+"/api/v1/evidence", "collector-a", 100), newReplica(t, s.url+"/api/v1/evidence", "collector-b", 4)
	t0 := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	for i := range 5 {
		a.logs.Add(Key{"checkout", "v2"}, t0.Add(time.Duration(i)*time.Second), logLine{Body: "payment declined", TraceID: "t" + string(rune('0'+i))})
	}
	a.traces.Add(Key{"checkout", "v2"}, t0, spanRef{TraceID: "abc"})
	b.logs.Add(Key{"cart", "v7"}, t0, logLine{Body: "cart empty"})

	// The answer to the first request is lost: it was stored, then retried.
	s.fail.Store(1)
	ctx := context.Background()
	a.fwd.Flush(ctx)
	if a.out.Len() == 0 {
		t.Fatal("a failed request's records were dropped instead of kept for a retry")
	}
	a.fwd.Flush(ctx)
	b.fwd.Flush(ctx)
	if a.out.Len() != 0 || b.out.Len() != 0 {
		t.Fatalf("records left after a successful flush: %d, %d", a.out.Len(), b.out.Len())
	}
	logs := s.logs.Recent("checkout", "v2", time.Time{}, 0)
	if len(logs) != 5 {
		t.Fatalf("store holds %d error logs of checkout v2, want 5 (no duplicates): %+v", len(logs), logs)
	}
	if logs[0].Item.TraceID != "t4" || !logs[0].At.Equal(t0.Add(4*time.Second)) || logs[0].Collector != "collector-a" {
		t.Errorf("newest record %+v, want t4 at the replica's time from collector-a", logs[0])
	}
	if got := testutil.ToFloat64(s.rcv.duplicate); got != 3 {
		t.Errorf("duplicates dropped: %v, want the 3 records of the retried batch", got)
	}
	if tr := s.traces.Recent("checkout", "v2", time.Time{}, 0); len(tr) != 1 || tr[0].Item.TraceID != "abc" {
		t.Errorf("store's error traces: %+v", tr)
	}
	if l := s.logs.Recent("cart", "", time.Time{}, 0); len(l) != 1 || l[0].Collector != "collector-b" {
		t.Errorf("cart's error logs from collector-b: %+v", l)
	}

	// Store down: b's queue holds its newest 4 records, the oldest dropped.
	s.down.Store(true)
	for i := range 6 {
		b.logs.Add(Key{"cart", "v7"}, t0.Add(time.Duration(i+1)*time.Second), logLine{Body: "cart " + string(rune('a'+i))})
	}
	b.fwd.Flush(ctx)
	if b.out.Len() != 4 || testutil.ToFloat64(b.out.dropped) != 2 {
		t.Fatalf("queue %d (want 4), dropped %v (want 2)", b.out.Len(), testutil.ToFloat64(b.out.dropped))
	}
	s.down.Store(false)
	// Scaled in: Run's last flush on cancellation sends what is left.
	runCtx, cancel := context.WithCancel(ctx)
	cancel()
	b.fwd.Run(runCtx)
	got := s.logs.Recent("cart", "v7", time.Time{}, 0)
	if len(got) != 5 || got[0].Item.Body != "cart f" || got[3].Item.Body != "cart c" {
		t.Errorf("after the store came back and b stopped: %+v, want cart f..c and the first", got)
	}
}

// TestEvidenceReceiverRefuses: only the writers of
// accept_derived_series_from may forward, and bad batches are 400s that
// name the problem.
func TestEvidenceReceiverRefuses(t *testing.T) {
	s := newStore(t)
	rec := func(ring, service string, record string) WireRecord {
		return WireRecord{Ring: ring, Service: service, Version: "v1", ObservedAt: time.Now(), Record: json.RawMessage(record)}
	}
	for _, tc := range []struct {
		name   string
		writer string
		body   string
		code   int
		msg    string
	}{
		{"agents may not", "agents", mustJSON(t, Batch{Collector: "x", Records: []WireRecord{rec("error_logs", "checkout", `{"body":"forged"}`)}}), 403, `"agents" may not forward evidence`},
		{"not JSON", "collectors", "{", 400, "decode evidence batch"},
		{"unknown ring", "collectors", mustJSON(t, Batch{Records: []WireRecord{rec("secrets", "checkout", `{}`)}}), 400, `unknown ring "secrets"`},
		{"no service", "collectors", mustJSON(t, Batch{Records: []WireRecord{rec("error_logs", "", `{}`)}}), 400, "no service"},
		{"record too large", "collectors", mustJSON(t, Batch{Records: []WireRecord{rec("error_logs", "checkout", `{"body":"`+strings.Repeat("x", maxRecordBytes)+`"}`)}}), 400, "larger than"},
		{"too many records", "collectors", mustJSON(t, Batch{Records: make([]WireRecord, MaxBatchRecords+1)}), 400, "more than"},
		{"body too large", "collectors", `{"records":[` + strings.Repeat(" ", maxBatchBytes) + `]}`, 413, "exceeds the limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.writer.Store(tc.writer)
			resp, err := http.Post(s.url+"/api/v1/evidence", "application/json", bytes.NewBufferString(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			_, _ = b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code || !strings.Contains(b.String(), tc.msg) {
				t.Errorf("%d %q, want %d with %q", resp.StatusCode, b.String(), tc.code, tc.msg)
			}
		})
	}
	if n := len(s.logs.Recent("", "", time.Time{}, 0)); n != 0 {
		t.Errorf("%d records kept from refused batches", n)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
