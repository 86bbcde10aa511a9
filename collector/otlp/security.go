package otlp

import (
	"crypto/tls"
	"net"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Security guards the OTLP listeners: TLS (the web configuration file's
// certificate and client CA) and who may write.
type Security struct {
	// TLS, when not nil, returns the server TLS configuration for the given
	// ALPN protocols; both listeners are then served over TLS.
	TLS func(nextProtos ...string) *tls.Config
	// HTTP wraps the OTLP/HTTP listener's handler (authentication).
	HTTP func(http.Handler) http.Handler
	// GRPC authenticates each gRPC call before it takes an ingest slot.
	GRPC grpc.UnaryServerInterceptor
}

// SetSecurity guards both transports with s (call before Start).
func (r *Receiver) SetSecurity(s Security) { r.security = s }

func (s Security) grpcOptions() []grpc.ServerOption {
	if s.TLS == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(s.TLS()))}
}

// interceptors puts authentication before the others.
func (s Security) interceptors(rest ...grpc.UnaryServerInterceptor) []grpc.UnaryServerInterceptor {
	if s.GRPC == nil {
		return rest
	}
	return append([]grpc.UnaryServerInterceptor{s.GRPC}, rest...)
}

func (s Security) wrapHTTP(h http.Handler) http.Handler {
	if s.HTTP == nil {
		return h
	}
	return s.HTTP(h)
}

func (s Security) serveHTTP(srv *http.Server, ln net.Listener) error {
	if s.TLS == nil {
		return srv.Serve(ln)
	}
	srv.TLSConfig = s.TLS("h2", "http/1.1")
	return srv.ServeTLS(ln, "", "")
}
