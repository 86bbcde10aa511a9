package otlp

import (
	"context"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/vigilhq/vigil/collector"
)

// The OTLP/gRPC services are registered here rather than through pdata's
// RegisterGRPCServer, whose handlers decode a request before anything can
// look at it: a request nesting millions of levels overflows the stack
// inside the decoder. The server's codec hands each request over as bytes
// (rawRequest); the Export handler runs the interceptors, then checks the
// nesting, refuses a too deep request with InvalidArgument, and only then
// decodes it with pdata and exports it.

// rawRequest is an export request as it came off the wire.
type rawRequest struct{ buf mem.Buffer }

// rawResponse is an encoded export response.
type rawResponse []byte

// wireCodec is the OTLP/gRPC server's codec: it keeps requests as bytes and
// writes encoded responses as they are; anything else goes to the codec
// registered for protobuf.
type wireCodec struct{ delegate encoding.CodecV2 }

func newWireCodec() wireCodec { return wireCodec{delegate: encoding.GetCodecV2("proto")} }

func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(rawResponse); ok {
		return mem.BufferSlice{mem.SliceBuffer(r)}, nil
	}
	return c.delegate.Marshal(v)
}

func (c wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*rawRequest); ok {
		r.buf = data.MaterializeToBuffer(mem.DefaultBufferPool())
		return nil
	}
	return c.delegate.Unmarshal(data, v)
}

func (wireCodec) Name() string { return "proto" }

// exportMethod is one OTLP Export RPC.
type exportMethod struct {
	service string
	signal  collector.OTLPSignal
	decode  func([]byte) (any, error)
	export  func(r *Receiver, ctx context.Context, req any) (any, error)
	encode  func(resp any) ([]byte, error)
}

var exportMethods = []exportMethod{
	{
		service: "opentelemetry.proto.collector.metrics.v1.MetricsService",
		signal:  collector.OTLPMetrics,
		decode: func(b []byte) (any, error) {
			req := pmetricotlp.NewExportRequest()
			return req, req.UnmarshalProto(b)
		},
		export: (*Receiver).exportMetrics,
		encode: func(resp any) ([]byte, error) { return resp.(pmetricotlp.ExportResponse).MarshalProto() },
	},
	{
		service: "opentelemetry.proto.collector.trace.v1.TraceService",
		signal:  collector.OTLPTraces,
		decode: func(b []byte) (any, error) {
			req := ptraceotlp.NewExportRequest()
			return req, req.UnmarshalProto(b)
		},
		export: (*Receiver).exportTraces,
		encode: func(resp any) ([]byte, error) { return resp.(ptraceotlp.ExportResponse).MarshalProto() },
	},
	{
		service: "opentelemetry.proto.collector.logs.v1.LogsService",
		signal:  collector.OTLPLogs,
		decode: func(b []byte) (any, error) {
			req := plogotlp.NewExportRequest()
			return req, req.UnmarshalProto(b)
		},
		export: (*Receiver).exportLogs,
		encode: func(resp any) ([]byte, error) { return resp.(plogotlp.ExportResponse).MarshalProto() },
	},
}

// registerServices registers the metrics, trace and logs services on s,
// which must use wireCodec.
func (r *Receiver) registerServices(s *grpc.Server) {
	for _, m := range exportMethods {
		s.RegisterService(&grpc.ServiceDesc{
			ServiceName: m.service,
			HandlerType: (*any)(nil),
			Methods:     []grpc.MethodDesc{{MethodName: "Export", Handler: r.exportHandler(m)}},
			Metadata:    "opentelemetry/proto/collector",
		}, r)
	}
}

// exportHandler runs the server's interceptors (authentication, the
// processing slot, the request metrics) around the nesting check, the
// decoding and the export: a request is decoded only once it is
// authenticated and admitted. The interceptors see the request as a
// *rawRequest.
func (r *Receiver) exportHandler(m exportMethod) grpc.MethodHandler {
	info := &grpc.UnaryServerInfo{FullMethod: "/" + m.service + "/Export"}
	handle := func(ctx context.Context, req any) (any, error) {
		return r.export(ctx, m, req.(*rawRequest).buf.ReadOnlyData())
	}
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		raw := new(rawRequest)
		if err := dec(raw); err != nil {
			return nil, err
		}
		defer raw.buf.Free()
		if interceptor == nil {
			return handle(ctx, raw)
		}
		return interceptor(ctx, raw, &grpc.UnaryServerInfo{Server: srv, FullMethod: info.FullMethod}, handle)
	}
}

// export checks the nesting of an export request, refusing one too deep
// with InvalidArgument before it is decoded, then decodes and exports it.
func (r *Receiver) export(ctx context.Context, m exportMethod, body []byte) (any, error) {
	if err := collector.CheckOTLPProtoDepth(body, m.signal); err != nil {
		r.metrics.RefusedRequests.WithLabelValues(ReceiverName, collector.RefusedTooDeep).Inc()
		return nil, status.Errorf(codes.InvalidArgument, "refused before decoding: %v", err)
	}
	req, err := m.decode(body)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "decode OTLP request: %v", err)
	}
	resp, err := m.export(r, ctx, req)
	if err != nil {
		return nil, err
	}
	b, err := m.encode(resp)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode OTLP response: %v", err)
	}
	return rawResponse(b), nil
}

func (r *Receiver) exportMetrics(ctx context.Context, req any) (any, error) {
	resp := pmetricotlp.NewExportResponse()
	res, err := r.consumeMetrics(ctx, req.(pmetricotlp.ExportRequest).Metrics())
	if err != nil {
		return resp, r.grpcError(err)
	}
	if res.rejected > 0 {
		resp.PartialSuccess().SetRejectedDataPoints(res.rejected)
		resp.PartialSuccess().SetErrorMessage(res.message)
	}
	return resp, nil
}

func (r *Receiver) exportTraces(ctx context.Context, req any) (any, error) {
	if _, err := r.consumeTraces(ctx, req.(ptraceotlp.ExportRequest).Traces()); err != nil {
		return ptraceotlp.NewExportResponse(), r.grpcError(err)
	}
	return ptraceotlp.NewExportResponse(), nil
}

func (r *Receiver) exportLogs(ctx context.Context, req any) (any, error) {
	if _, err := r.consumeLogs(ctx, req.(plogotlp.ExportRequest).Logs()); err != nil {
		return plogotlp.NewExportResponse(), r.grpcError(err)
	}
	return plogotlp.NewExportResponse(), nil
}
