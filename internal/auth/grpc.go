package auth

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// UnaryServerInterceptor authenticates gRPC calls by their "authorization"
// metadata (Bearer or Basic, as on HTTP): Unauthenticated without a valid
// credential, PermissionDenied without scope s. The principal is in the
// handler's context.
func (a *Authenticator) UnaryServerInterceptor(s Scope) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !a.Enabled() {
			return handler(NewContext(ctx, Anonymous), req)
		}
		var header string
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get("authorization"); len(v) > 0 {
				header = v[0]
			}
		}
		p, reason := a.authenticate(header)
		if reason == "" && !p.Has(s) {
			reason = ReasonScope
		}
		switch reason {
		case "":
			return handler(NewContext(ctx, p), req)
		case ReasonScope:
			a.refused(reason)
			return nil, status.Errorf(codes.PermissionDenied, "%q may not use this service: it needs scope %q and has %s", p.Name, s, scopeString(p.Scopes))
		case ReasonMissing:
			a.refused(reason)
			return nil, status.Errorf(codes.Unauthenticated, "authentication required: send authorization metadata \"Bearer <token>\" with a token of scope %q", s)
		default:
			a.refused(reason)
			return nil, status.Error(codes.Unauthenticated, "the credential matches no token of auth.tokens and no basic-auth user")
		}
	}
}
