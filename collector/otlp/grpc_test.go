package otlp

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/vigilhq/vigil/collector"
	"github.com/vigilhq/vigil/collector/hotpath"
	"github.com/vigilhq/vigil/storage"
)

// startGRPC serves the receiver's OTLP/gRPC on a free loopback port.
func startGRPC(t *testing.T) (*grpc.ClientConn, *fixture, *collector.Metrics) {
	t.Helper()
	scfg := storage.DefaultConfig()
	scfg.Path = t.TempDir()
	store, err := storage.Open(scfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	pipe, err := hotpath.New(hotpath.DefaultConfig(), store, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: store, traces: &countingTraces{}, logs: &countingLogs{}}
	cfg := DefaultConfig()
	cfg.GRPC.ListenAddress, cfg.HTTP.ListenAddress = "127.0.0.1:0", ""
	m := collector.NewMetrics(prometheus.NewRegistry())
	r, err := New(cfg, Consumers{Metrics: pipe, Metadata: store.Metadata(), Traces: f.traces, Logs: f.logs}, m, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := r.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Stop(ctx)
	})
	conn, err := grpc.NewClient(srv.GRPCAddr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, f, m
}

// rawCodec lets a test put arbitrary bytes on the wire.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

func nest(v pcommon.Value, levels int) {
	for range levels {
		v = v.SetEmptySlice().AppendEmpty()
	}
	v.SetStr("leaf")
}

// TestGRPC: the pdata clients export through Vigil's own service
// descriptors and codec (responses included, partial success too); a
// request nesting too deep is refused with InvalidArgument before it is
// decoded, and a corrupt one with InvalidArgument too.
func TestGRPC(t *testing.T) {
	conn, f, m := startGRPC(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	now := time.Now()
	md := sumMetrics("orders", now, pmetric.AggregationTemporalityCumulative, 1, 2)
	sumMetrics("orders", now.Add(-3*time.Hour), pmetric.AggregationTemporalityCumulative, 0).ResourceMetrics().MoveAndAppendTo(md.ResourceMetrics())
	resp, err := pmetricotlp.NewGRPCClient(conn).Export(ctx, pmetricotlp.NewExportRequestFromMetrics(md))
	if err != nil {
		t.Fatal(err)
	}
	if ps := resp.PartialSuccess(); ps.RejectedDataPoints() != 1 || !strings.Contains(ps.ErrorMessage(), "too_old: 1") {
		t.Errorf("partial success: %d %q, want the point of three hours ago refused", ps.RejectedDataPoints(), ps.ErrorMessage())
	}
	if got := f.samples(t, "orders_total"); len(got) != 2 {
		t.Errorf("orders_total = %v, want 2 samples", got)
	}

	td := ptrace.NewTraces()
	td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName("GET /")
	if _, err := ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(td)); err != nil {
		t.Fatal(err)
	}
	ld := plog.NewLogs()
	nest(ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body(), collector.MaxAnyValueDepth)
	if _, err := plogotlp.NewGRPCClient(conn).Export(ctx, plogotlp.NewExportRequestFromLogs(ld)); err != nil {
		t.Fatalf("a log body nesting %d levels: %v", collector.MaxAnyValueDepth, err)
	}
	if f.traces.spans != 1 || f.logs.records != 1 {
		t.Errorf("consumed %d spans and %d records, want 1 and 1", f.traces.spans, f.logs.records)
	}

	deep := plog.NewLogs()
	nest(deep.ResourceLogs().AppendEmpty().Resource().Attributes().PutEmpty("service.name"), collector.MaxAnyValueDepth+1)
	deepBody, _ := plogotlp.NewExportRequestFromLogs(deep).MarshalProto()
	for _, tc := range []struct {
		name string
		body []byte
		msg  string
	}{
		{"too deep", deepBody, "refused before decoding: attribute or log body values (arrays and key-value lists) nest deeper than the limit of 64 levels"},
		{"corrupt", []byte{0x0a, 0x05, 0x01}, "decode OTLP request"},
	} {
		var out []byte
		err := conn.Invoke(ctx, "/opentelemetry.proto.collector.logs.v1.LogsService/Export", &tc.body, &out, grpc.ForceCodecV2(rawCodec{}))
		if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tc.msg) {
			t.Errorf("%s: got %v, want InvalidArgument %q", tc.name, err, tc.msg)
		}
	}
	if f.logs.records != 1 {
		t.Errorf("refused requests reached the consumer: %d records", f.logs.records)
	}
	if v := testutil.ToFloat64(m.RefusedRequests.WithLabelValues(ReceiverName, collector.RefusedTooDeep)); v != 1 {
		t.Errorf("refused too_deep = %v, want 1", v)
	}
	if v := testutil.ToFloat64(m.Requests.WithLabelValues(ReceiverName, codes.InvalidArgument.String())); v != 2 {
		t.Errorf("requests with InvalidArgument = %v, want 2", v)
	}
}

// FuzzGRPCExport feeds arbitrary bytes to the Export handlers as the gRPC
// server would: they answer a response or a status, never panic.
func FuzzGRPCExport(f *testing.F) {
	seed := sumMetrics("orders", time.Unix(1700000000, 0), pmetric.AggregationTemporalityCumulative, 1)
	p, _ := pmetricotlp.NewExportRequestFromMetrics(seed).MarshalProto()
	f.Add(uint8(0), p)
	ld := plog.NewLogs()
	nest(ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body(), 200)
	lp, _ := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	f.Add(uint8(2), lp)
	r, err := New(DefaultConfig(), Consumers{}, collector.NewMetrics(nil), slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	handlers := make([]grpc.MethodHandler, len(exportMethods))
	for i, m := range exportMethods {
		handlers[i] = r.exportHandler(m)
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		dec := func(v any) error {
			return newWireCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(body)}, v)
		}
		resp, err := handlers[int(which)%len(handlers)](r, context.Background(), dec, nil)
		if err != nil {
			if st, ok := status.FromError(err); !ok || st.Code() != codes.InvalidArgument {
				t.Fatalf("error %v is not InvalidArgument", err)
			}
			return
		}
		if _, ok := resp.(rawResponse); !ok {
			t.Fatalf("response of type %T", resp)
		}
	})
}
