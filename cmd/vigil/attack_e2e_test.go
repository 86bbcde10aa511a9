package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // the attack's gRPC request is gzipped
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/vigilhq/vigil/internal/peers"
)

// The attack suite replays, against the real binary, requests that once
// killed or stalled Vigil (issue 14). Each attack asserts what a user sees:
// the process stays up, /-/ready keeps answering within 1 s while the attack
// runs (a liveness bound measured with a 1 s client timeout, not a speed
// assertion), and the attack gets the protocol's own refusal.

// readyProbe polls /-/ready with a 1 s client timeout until stopped and
// records every probe that did not answer 200 in time.
type readyProbe struct {
	stop     chan struct{}
	done     chan struct{}
	probes   atomic.Int64
	mu       sync.Mutex
	failures []string
}

func startReadyProbe(t *testing.T, base string) *readyProbe {
	t.Helper()
	p := &readyProbe{stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: time.Second}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			p.probe(client, base)
			select {
			case <-p.stop:
				p.probe(client, base) // once more as the attack ends
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(p.halt)
	return p
}

func (p *readyProbe) probe(client *http.Client, base string) {
	p.probes.Add(1)
	resp, err := client.Get(base + "/-/ready")
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return
		}
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	p.mu.Lock()
	p.failures = append(p.failures, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
	p.mu.Unlock()
}

func (p *readyProbe) halt() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// check stops the probe and fails t if any probe failed.
func (p *readyProbe) check(t *testing.T) {
	t.Helper()
	p.halt()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.probes.Load() == 0 {
		t.Error("the readiness probe never ran")
	}
	if len(p.failures) > 0 {
		t.Errorf("/-/ready did not answer 200 within 1 s in %d of %d probes while under attack: %v", len(p.failures), p.probes.Load(), p.failures)
	}
}

// --- deep nesting --------------------------------------------------------

// deepJSONAnyValue is an OTLP/JSON AnyValue of levels nested arrays.
func deepJSONAnyValue(levels int) string {
	return strings.Repeat(`{"arrayValue":{"values":[`, levels) + `{"stringValue":"x"}` + strings.Repeat(`]}}`, levels)
}

// deepProtoAnyValue is an OTLP protobuf AnyValue of levels nested
// ArrayValues, written outside in without copying the inner levels.
func deepProtoAnyValue(levels int) []byte {
	inner := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "x") // AnyValue{string_value: "x"}
	anyLen := make([]int, levels+1)                                                        // size of the AnyValue at each level
	arrLen := make([]int, levels+1)                                                        // size of the ArrayValue inside it
	anyLen[0] = len(inner)
	for i := 1; i <= levels; i++ {
		arrLen[i] = 1 + protowire.SizeVarint(uint64(anyLen[i-1])) + anyLen[i-1]
		anyLen[i] = 1 + protowire.SizeVarint(uint64(arrLen[i])) + arrLen[i]
	}
	b := make([]byte, 0, anyLen[levels])
	for i := levels; i >= 1; i-- {
		b = protowire.AppendTag(b, 5, protowire.BytesType) // AnyValue.array_value
		b = protowire.AppendVarint(b, uint64(arrLen[i]))
		b = protowire.AppendTag(b, 1, protowire.BytesType) // ArrayValue.values
		b = protowire.AppendVarint(b, uint64(anyLen[i-1]))
	}
	return append(b, inner...)
}

func protoMsg(num protowire.Number, payload []byte) []byte {
	b := protowire.AppendTag(make([]byte, 0, len(payload)+16), num, protowire.BytesType)
	return protowire.AppendBytes(b, payload)
}

// protoLogsWithBody is an ExportLogsServiceRequest with one record whose body is anyValue.
func protoLogsWithBody(anyValue []byte) []byte {
	record := protoMsg(5, anyValue) // LogRecord.body
	scope := protoMsg(2, record)    // ScopeLogs.log_records
	resource := protoMsg(2, scope)  // ResourceLogs.scope_logs
	return protoMsg(1, resource)    // ExportLogsServiceRequest.resource_logs
}

// protoTracesWithServiceName is an ExportTraceServiceRequest whose resource's
// service.name is anyValue, with one span.
func protoTracesWithServiceName(anyValue []byte) []byte {
	kv := append(protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "service.name"), protoMsg(2, anyValue)...)
	res := protoMsg(1, kv) // Resource.attributes
	span := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), bytes.Repeat([]byte{1}, 16))
	span = append(span, protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), bytes.Repeat([]byte{2}, 8))...)
	span = append(span, protowire.AppendString(protowire.AppendTag(nil, 5, protowire.BytesType), "GET /")...)
	rs := append(protoMsg(1, res), protoMsg(2, protoMsg(2, span))...) // ResourceSpans{resource, scope_spans{spans}}
	return protoMsg(1, rs)
}

func gzipped(t *testing.T, b []byte, level int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, level)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// post sends body and returns the status and the response body.
func post(t *testing.T, url, contentType, encoding string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// rawCodec sends and receives protobuf bytes as they are, so the attack
// can put on the wire what no generated client would build.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

func grpcExport(t *testing.T, addr, method string, body []byte) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var resp []byte
	// Uncompressed: gzip of 29 MB in the test process (under -race) takes longer
	// than the deadline; the server reads and refuses it the same way.
	return conn.Invoke(ctx, method, &body, &resp, grpc.ForceCodecV2(rawCodec{}))
}

// TestAttackDeepNesting replays the requests that crashed Vigil with a stack
// overflow: a 63 KB gzipped OTLP/JSON log whose body nests a million arrays,
// the same nesting in service.name on traces, three million protobuf levels
// over OTLP/gRPC and OTLP/HTTP, and a deep Loki push. Each is refused with
// 400 / InvalidArgument naming the limit; the process stays up and ready;
// and a well-behaved writer sending small requests over remote_write,
// OTLP/HTTP and OTLP/gRPC all along is acknowledged every time, each of its
// samples queryable afterwards.
func TestAttackDeepNesting(t *testing.T) {
	v := peers.StartVigil(t, "")
	const jsonLevels, protoLevels = 1_000_000, 3_000_000

	jsonLogs := []byte(`{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"attacker"}}]},"scopeLogs":[{"logRecords":[{"severityNumber":17,"body":` +
		deepJSONAnyValue(jsonLevels) + `}]}]}]}`)
	jsonTraces := []byte(`{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":` + deepJSONAnyValue(jsonLevels) +
		`}]},"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"GET /","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}`)
	deep := deepProtoAnyValue(protoLevels)
	protoLogs := protoLogsWithBody(deep)
	protoTraces := protoTracesWithServiceName(deep)
	lokiJSON := []byte(`{"streams":[{"stream":{"app":"attacker"},"values":[["1","line",` + strings.Repeat("[", jsonLevels) + strings.Repeat("]", jsonLevels) + `]]}]}`)
	gzJSONLogs := gzipped(t, jsonLogs, gzip.BestCompression) // 63 KB on the wire
	t.Logf("OTLP/JSON logs attack: %d bytes gzipped (%d plain); protobuf attack: %d bytes", len(gzJSONLogs), len(jsonLogs), len(protoLogs))

	httpCases := []struct {
		name, url, contentType, encoding string
		body                             []byte
		want                             int
		wantMsg                          string
	}{
		{"OTLP-HTTP JSON logs, body nested 1,000,000 levels, gzip", "http://" + v.OTLPHTTP + "/v1/logs", "application/json", "gzip", gzJSONLogs, 400, "64"},
		{"OTLP-HTTP JSON traces, service.name nested 1,000,000 levels, gzip", "http://" + v.OTLPHTTP + "/v1/traces", "application/json", "gzip", gzipped(t, jsonTraces, gzip.BestSpeed), 400, "64"},
		{"OTLP-HTTP protobuf logs nested 3,000,000 levels, gzip", "http://" + v.OTLPHTTP + "/v1/logs", "application/x-protobuf", "gzip", gzipped(t, protoLogs, gzip.BestSpeed), 400, "64"},
		{"OTLP-HTTP protobuf traces on the main port, service.name nested 3,000,000 levels", v.URL() + "/otlp/v1/traces", "application/x-protobuf", "gzip", gzipped(t, protoTraces, gzip.BestSpeed), 400, "64"},
		{"Loki JSON push nested 1,000,000 levels, gzip", v.URL() + "/loki/api/v1/push", "application/json", "gzip", gzipped(t, lokiJSON, gzip.BestSpeed), 400, "limit of 32 levels"},
	}
	writer := startGoodWriter(t, v)
	for _, tc := range httpCases {
		t.Run(tc.name, func(t *testing.T) {
			probe := startReadyProbe(t, v.URL())
			code, msg := post(t, tc.url, tc.contentType, tc.encoding, tc.body)
			probe.check(t)
			if v.Exited() {
				t.Fatalf("Vigil exited after the attack:\n%s", tail(v.Logs(), 4000))
			}
			if code != tc.want || !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("got %d %q, want %d naming the limit (%q)", code, msg, tc.want, tc.wantMsg)
			}
		})
	}

	grpcCases := []struct {
		name, method string
		body         []byte
	}{
		{"OTLP-gRPC logs, body nested 3,000,000 levels", "/opentelemetry.proto.collector.logs.v1.LogsService/Export", protoLogs},
		{"OTLP-gRPC traces, service.name nested 3,000,000 levels", "/opentelemetry.proto.collector.trace.v1.TraceService/Export", protoTraces},
	}
	for _, tc := range grpcCases {
		t.Run(tc.name, func(t *testing.T) {
			probe := startReadyProbe(t, v.URL())
			err := grpcExport(t, v.OTLPGRPC, tc.method, tc.body)
			probe.check(t)
			if v.Exited() {
				t.Fatalf("Vigil exited after the attack:\n%s", tail(v.Logs(), 4000))
			}
			if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "64") {
				t.Errorf("got %v, want InvalidArgument naming the limit of 64 levels", err)
			}
		})
	}
	writer.check(t, v)

	// The server still takes well-formed telemetry on every transport.
	code, msg := post(t, "http://"+v.OTLPHTTP+"/v1/logs", "application/json", "",
		[]byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":17,"body":`+deepJSONAnyValue(8)+`}]}]}]}`))
	if code != http.StatusOK {
		t.Errorf("a log whose body nests 8 levels: got %d %s, want 200", code, msg)
	}
	if err := grpcExport(t, v.OTLPGRPC, "/opentelemetry.proto.collector.logs.v1.LogsService/Export", protoLogsWithBody(deepProtoAnyValue(8))); err != nil {
		t.Errorf("a log whose body nests 8 levels over gRPC: %v", err)
	}
	m := httpGetBody(t, v.URL()+"/metrics")
	for _, want := range []string{`vigil_ingest_refused_requests_total{reason="too_deep",receiver="otlp"} 6`, `vigil_ingest_refused_requests_total{reason="too_deep",receiver="loki"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// --- a well-behaved writer -----------------------------------------------

// postRemoteWrite sends req as a remote_write 1.0 request and returns the
// status and the response body.
func postRemoteWrite(client *http.Client, url string, req *prompb.WriteRequest) (int, string, error) {
	raw, err := req.Marshal()
	if err != nil {
		return 0, "", err
	}
	hreq, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(snappy.Encode(nil, raw)))
	if err != nil {
		return 0, "", err
	}
	hreq.Header.Set("Content-Type", "application/x-protobuf")
	hreq.Header.Set("Content-Encoding", "snappy")
	hreq.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := client.Do(hreq)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(bytes.TrimSpace(b)), nil
}

// goodWriters are the transports of goodWriter, each with the metric its
// samples go to.
var goodWriters = []struct{ transport, metric string }{
	{"remote_write", "good_writer_remote_write"},
	{"OTLP/HTTP", "good_writer_otlp_http"},
	{"OTLP/gRPC", "good_writer_otlp_grpc"},
}

// goodWriter is a well-behaved client: every 20 ms, until stopped, it
// writes one sample in a small valid request, in turn over remote_write
// (main port), OTLP/HTTP and OTLP/gRPC, each transport to a metric of its
// own, at strictly increasing timestamps, with a 10 s client timeout.
type goodWriter struct {
	stop, done chan struct{}
	began      time.Time

	mu       sync.Mutex
	acked    map[string]int // by metric
	refusals []string
}

func startGoodWriter(t *testing.T, v *peers.Vigil) *goodWriter {
	t.Helper()
	conn, err := grpc.NewClient(v.OTLPGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	w := &goodWriter{stop: make(chan struct{}), done: make(chan struct{}), began: time.Now(), acked: map[string]int{}}
	client := &http.Client{Timeout: 10 * time.Second}
	grpcClient := pmetricotlp.NewGRPCClient(conn)
	go func() {
		defer close(w.done)
		defer conn.Close()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var last int64
		for k := 0; ; k++ {
			ts := max(time.Now().UnixMilli(), last+1)
			last = ts
			gw := goodWriters[k%len(goodWriters)]
			var refusal string
			switch gw.transport {
			case "remote_write":
				code, body, err := postRemoteWrite(client, v.URL()+"/api/v1/write", &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
					Labels:  []prompb.Label{{Name: "__name__", Value: gw.metric}},
					Samples: []prompb.Sample{{Value: float64(k), Timestamp: ts}},
				}}})
				if err != nil {
					refusal = err.Error()
				} else if code/100 != 2 {
					refusal = fmt.Sprintf("%d %s", code, body)
				}
			default:
				md := pmetric.NewMetrics()
				rm := md.ResourceMetrics().AppendEmpty()
				rm.Resource().Attributes().PutStr("service.name", "good-writer")
				m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
				m.SetName(gw.metric)
				dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
				dp.SetTimestamp(pcommon.Timestamp(ts * int64(time.Millisecond)))
				dp.SetDoubleValue(float64(k))
				req := pmetricotlp.NewExportRequestFromMetrics(md)
				resp := pmetricotlp.NewExportResponse()
				var err error
				if gw.transport == "OTLP/gRPC" {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					resp, err = grpcClient.Export(ctx, req)
					cancel()
				} else {
					body, _ := req.MarshalProto()
					var code int
					var answer string
					code, answer, err = postProtobuf(client, "http://"+v.OTLPHTTP+"/v1/metrics", body)
					if err == nil && code/100 != 2 {
						err = fmt.Errorf("%d %s", code, answer)
					} else if err == nil {
						err = resp.UnmarshalProto([]byte(answer))
					}
				}
				if err != nil {
					refusal = err.Error()
				} else if ps := resp.PartialSuccess(); ps.RejectedDataPoints() != 0 {
					refusal = fmt.Sprintf("%d points rejected: %s", ps.RejectedDataPoints(), ps.ErrorMessage())
				}
			}
			w.mu.Lock()
			if refusal == "" {
				w.acked[gw.metric]++
			} else {
				w.refusals = append(w.refusals, fmt.Sprintf("%s %s: %s", time.Now().Format("15:04:05.000"), gw.transport, refusal))
			}
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(w.halt)
	return w
}

// postProtobuf POSTs a protobuf body and returns the status and the response body.
func postProtobuf(client *http.Client, url string, body []byte) (int, string, error) {
	resp, err := client.Post(url, "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func (w *goodWriter) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// check stops the writer and fails t unless every one of its requests was
// acknowledged and every sample it wrote is queryable, exactly.
func (w *goodWriter) check(t *testing.T, v *peers.Vigil) {
	t.Helper()
	w.halt()
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Logf("the well-behaved writer: %v acknowledged, %d refused", w.acked, len(w.refusals))
	if len(w.refusals) > 0 {
		t.Errorf("the well-behaved writer was refused %d times under attack: %q", len(w.refusals), w.refusals)
	}
	window := fmt.Sprintf("%ds", int(time.Since(w.began).Seconds())+60)
	for _, gw := range goodWriters {
		if w.acked[gw.metric] == 0 {
			t.Errorf("the well-behaved writer never wrote over %s", gw.transport)
			continue
		}
		// instant queries at whole seconds: the next one holds every sample.
		d := instant(t, v.URL(), "sum(count_over_time("+gw.metric+"["+window+"]))", time.Now().Add(time.Second))
		var res []struct {
			Value [2]any `json:"value"`
		}
		if err := json.Unmarshal(d.Result, &res); err != nil {
			t.Fatal(err)
		}
		if len(res) != 1 || res[0].Value[1] != strconv.Itoa(w.acked[gw.metric]) {
			t.Errorf("%s samples written over %s: queried %s, want %d", gw.metric, gw.transport, d.Result, w.acked[gw.metric])
		}
	}
}

// --- slow bodies ---------------------------------------------------------

// trickle opens a connection to addr, sends the headers of a POST to path
// announcing a 1,000-byte body, then one byte every interval until the
// server answers or stop closes. It returns the status line it got ("" if none).
func trickle(addr, path, contentType string, interval time.Duration, stop <-chan struct{}) string {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: 1000\r\n\r\n", path, addr, contentType)
	answered := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(conn).ReadString('\n')
		answered <- strings.TrimSpace(line)
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case line := <-answered:
			return line
		case <-stop:
			return ""
		case <-tick.C:
			if _, err := conn.Write([]byte{'x'}); err != nil {
				return <-answered
			}
		}
	}
}

// TestAttackSlowBodies: clients trickling request bodies one byte at a time
// once held every ingest slot, so every other writer got 429 for minutes.
// Now a body is read, within body_read_timeout, before a slot is taken:
// with twice as many tricklers as slots, a well-behaved remote_write
// sender keeps being acknowledged, /-/ready keeps answering, and each
// trickler is cut off with 408.
func TestAttackSlowBodies(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "vigil.yml")
	writeFile(t, cfg, `receivers:
  limits:
    max_concurrent_requests: 4
    max_queue_duration: 1s
    body_read_timeout: 2s
`)
	v := peers.StartVigil(t, filepath.Join(dir, "data"), "--config.file", cfg)
	probe := startReadyProbe(t, v.URL())

	stop := make(chan struct{})
	targets := []struct{ addr, path, contentType string }{
		{v.Addr, "/api/v1/write", "application/x-protobuf"},
		{v.Addr, "/loki/api/v1/push", "application/json"},
		{v.OTLPHTTP, "/v1/metrics", "application/x-protobuf"},
		{v.Addr, "/otlp/v1/logs", "application/json"},
	}
	var timedOut, otherAnswer atomic.Int64
	var answers sync.Map
	var wg sync.WaitGroup
	for i := range 8 { // twice max_concurrent_requests
		target := targets[i%len(targets)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				line := trickle(target.addr, target.path, target.contentType, 500*time.Millisecond, stop)
				switch {
				case line == "":
				case strings.Contains(line, " 408 "):
					timedOut.Add(1)
				default:
					otherAnswer.Add(1)
					answers.Store(line, true)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // the tricklers are connected and sending

	// A well-behaved sender writes every 200ms for 5s, with a 5s client timeout.
	client := &http.Client{Timeout: 5 * time.Second}
	var acked, refused int
	var refusals []string
	for k := 0; k < 25; k++ {
		code, body, err := postRemoteWrite(client, v.URL()+"/api/v1/write", &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
			Labels:  []prompb.Label{{Name: "__name__", Value: "good_writer"}, {Name: "k", Value: strconv.Itoa(k)}},
			Samples: []prompb.Sample{{Value: float64(k), Timestamp: time.Now().UnixMilli()}},
		}}})
		switch {
		case err != nil:
			refused++
			refusals = append(refusals, err.Error())
		case code/100 == 2:
			acked++
		default:
			refused++
			refusals = append(refusals, fmt.Sprintf("%d %s", code, body))
		}
		time.Sleep(200 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	probe.check(t)
	if v.Exited() {
		t.Fatalf("Vigil exited under the attack:\n%s", tail(v.Logs(), 4000))
	}
	t.Logf("good writer: %d acknowledged, %d refused; tricklers cut off with 408: %d", acked, refused, timedOut.Load())
	if refused > 0 {
		t.Errorf("the well-behaved writer was refused %d of %d times while slow clients trickled bodies: %v", refused, acked+refused, refusals)
	}
	if timedOut.Load() == 0 {
		t.Error("no trickling client was cut off with 408 after body_read_timeout")
	}
	if otherAnswer.Load() > 0 {
		var lines []string
		answers.Range(func(k, _ any) bool { lines = append(lines, k.(string)); return true })
		t.Errorf("%d tricklers got another answer than 408: %v", otherAnswer.Load(), lines)
	}
	if m := httpGetBody(t, v.URL()+"/metrics"); !strings.Contains(m, `vigil_ingest_refused_requests_total{reason="body_read_timeout",receiver="remote_write"}`) {
		t.Error("/metrics does not count the body read timeouts")
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
