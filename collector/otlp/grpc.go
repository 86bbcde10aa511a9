package otlp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // OTLP clients may gzip requests
	"google.golang.org/grpc/status"
)

// grpcError maps a consumer failure to the OTLP gRPC status: Unavailable
// (retryable) when storage is unavailable, Internal otherwise.
func (r *Receiver) grpcError(err error) error {
	r.logger.Warn("OTLP request failed", "err", err)
	if errors.Is(err, errUnavailable) {
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// instrument counts gRPC requests in the shared ingest metrics.
func (r *Receiver) instrument(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	inflight := r.metrics.InFlight.WithLabelValues(ReceiverName)
	inflight.Inc()
	defer inflight.Dec()
	var resp any
	var err error
	switch {
	case r.limiter == nil:
		resp, err = handler(ctx, req)
	case r.limiter.Acquire(ctx, ReceiverName):
		resp, err = handler(ctx, req)
		r.limiter.Release()
	default:
		// UNAVAILABLE is the code OTLP exporters always retry with backoff.
		err = status.Errorf(codes.Unavailable, "too many ingest requests are being processed; retry later")
	}
	r.metrics.Requests.WithLabelValues(ReceiverName, status.Code(err).String()).Inc()
	r.metrics.RequestDuration.WithLabelValues(ReceiverName).Observe(time.Since(start).Seconds())
	return resp, err
}

// Servers are the listening OTLP transports.
type Servers struct {
	grpc     *grpc.Server
	http     *http.Server
	GRPCAddr net.Addr // nil when gRPC is disabled
	HTTPAddr net.Addr // nil when the HTTP listener is disabled
	errs     chan error
}

// Start listens on the configured gRPC and HTTP addresses.
func (r *Receiver) Start() (*Servers, error) {
	s := &Servers{errs: make(chan error, 2)}
	if addr := r.cfg.GRPC.ListenAddress; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen for OTLP/gRPC on %s: %w", addr, err)
		}
		s.grpc = grpc.NewServer(append(r.security.grpcOptions(),
			grpc.MaxRecvMsgSize(int(r.cfg.GRPC.MaxRecvMsgSize)),
			grpc.ForceServerCodecV2(newWireCodec()), // requests reach the handlers as bytes: see grpcservice.go
			grpc.ChainUnaryInterceptor(r.security.interceptors(r.instrument)...),
		)...)
		r.registerServices(s.grpc)
		s.GRPCAddr = ln.Addr()
		go func() { s.errs <- s.grpc.Serve(ln) }()
		r.logger.Info("Listening for OTLP/gRPC", "address", ln.Addr().String(), "tls", r.security.TLS != nil)
	}
	if addr := r.cfg.HTTP.ListenAddress; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			s.Stop(context.Background())
			return nil, fmt.Errorf("listen for OTLP/HTTP on %s: %w", addr, err)
		}
		s.http = &http.Server{Handler: r.security.wrapHTTP(r.HTTPHandler("/v1")), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute}
		s.HTTPAddr = ln.Addr()
		go func() {
			if err := r.security.serveHTTP(s.http, ln); !errors.Is(err, http.ErrServerClosed) {
				s.errs <- err
			}
		}()
		r.logger.Info("Listening for OTLP/HTTP", "address", ln.Addr().String(), "tls", r.security.TLS != nil)
	}
	return s, nil
}

// Err delivers a listener's failure.
func (s *Servers) Err() <-chan error { return s.errs }

// Stop stops accepting requests and waits for those in flight until ctx is done.
func (s *Servers) Stop(ctx context.Context) {
	if s.http != nil {
		_ = s.http.Shutdown(ctx)
	}
	if s.grpc != nil {
		done := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			s.grpc.Stop()
		}
	}
}
