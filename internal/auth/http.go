package auth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Verifier authenticates a request by something other than the
// Authorization header, such as the HMAC signature GitHub puts on its
// webhooks. It is offered only on the routes registered WithVerifier.
type Verifier interface {
	// Verify returns the principal the request's credential stands for.
	// present is false when the request carries no such credential; ok is
	// false when it carries one that does not verify. Verify may read the
	// body, and must then leave an unread copy in r.Body.
	Verify(r *http.Request) (p Principal, present, ok bool)
}

// RouteOption widens how a route may be authenticated.
type RouteOption func(*Route)

// QueryToken lets the route take its bearer token from the URL query
// parameter access_token (RFC 6750, section 2.3), for delivery tools that
// cannot send a header (Flagger's webhooks). URLs end up in logs and
// proxies, so only the routes such a tool calls take it; the parameter is
// removed from the request before the handler sees it.
func QueryToken() RouteOption { return func(r *Route) { r.QueryToken = true } }

// WithVerifier lets the route be authenticated by v when the request has
// no Authorization header.
func WithVerifier(v Verifier) RouteOption {
	return func(r *Route) { r.verifier = v }
}

// Route is a registered route and how it is guarded.
type Route struct {
	// Pattern is the http.ServeMux pattern ("GET /api/v1/query").
	Pattern string
	Scope   Scope
	// QueryToken: the route also takes ?access_token=.
	QueryToken bool
	verifier   Verifier
}

// Verified reports whether the route takes a Verifier's credential.
func (r Route) Verified() bool { return r.verifier != nil }

// Require wraps next so that it runs only for requests whose credential has
// scope s; the principal is in the request's context (FromContext). When
// authentication is off (a nil or unloaded Authenticator) every request
// runs as Anonymous. ScopeNone routes run for everyone.
func (a *Authenticator) Require(s Scope, next http.Handler, opts ...RouteOption) http.Handler {
	var rt Route
	for _, o := range opts {
		o(&rt)
	}
	if s == ScopeNone {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.Enabled() {
			next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), Anonymous)))
			return
		}
		header := r.Header.Get("Authorization")
		var p Principal
		var reason Reason
		switch {
		case header != "":
			p, reason = a.authenticate(header)
		case rt.QueryToken && r.URL.Query().Has("access_token"):
			q := r.URL.Query()
			tok := q.Get("access_token")
			q.Del("access_token")
			r.URL.RawQuery = q.Encode()
			r.RequestURI = r.URL.RequestURI()
			p, reason = a.state.Load().bearer(tok)
		case rt.verifier != nil:
			var present, ok bool
			p, present, ok = rt.verifier.Verify(r)
			switch {
			case !present:
				reason = ReasonMissing
			case !ok:
				reason = ReasonSignature
			}
		default:
			reason = ReasonMissing
		}
		if reason == "" && !p.Has(s) {
			reason = ReasonScope
		}
		if reason != "" {
			a.refuse(w, r, s, p, reason)
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), p)))
	})
}

// refuse answers 401 (with WWW-Authenticate) or 403 in the Prometheus API's
// error envelope.
func (a *Authenticator) refuse(w http.ResponseWriter, r *http.Request, s Scope, p Principal, reason Reason) {
	a.refused(reason)
	a.logger.Debug("Request refused", "reason", reason, "path", r.URL.Path, "remote", r.RemoteAddr, "principal", p.Name, "needs", s)
	code, typ := http.StatusUnauthorized, "unauthorized"
	var msg string
	switch reason {
	case ReasonMissing:
		msg = fmt.Sprintf("authentication required: send Authorization: Bearer <token> with a token of scope %q (auth.tokens)", s)
	case ReasonInvalid:
		msg = "the credential matches no token of auth.tokens and no basic-auth user"
	case ReasonScheme:
		msg = "unsupported Authorization scheme: use Bearer <token> (or Basic for the web config's basic_auth_users)"
	case ReasonSignature:
		msg = "the request's signature does not match its body"
	case ReasonScope:
		code, typ = http.StatusForbidden, "forbidden"
		msg = fmt.Sprintf("%q may not use this route: it needs scope %q and has %s", p.Name, s, scopeString(p.Scopes))
	}
	if code == http.StatusUnauthorized {
		w.Header().Add("WWW-Authenticate", `Bearer realm="vigil"`)
		if a.hasUsers() {
			w.Header().Add("WWW-Authenticate", `Basic realm="vigil"`)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": "error", "errorType": typ, "error": msg})
}

func scopeString(s []Scope) string {
	if len(s) == 0 {
		return "no scope"
	}
	var parts []string
	for _, sc := range s {
		parts = append(parts, string(sc))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// Mux is an http.ServeMux whose every route is registered with the scope
// it needs: there is no way to add a route without saying who may use it.
type Mux struct {
	mux        *http.ServeMux
	authn      *Authenticator
	instrument func(pattern string, h http.Handler) http.Handler
	routes     []Route
}

// NewMux returns a Mux guarded by a (nil: every request is Anonymous).
// instrument, when not nil, wraps each route outside the check (so that
// refused requests are counted too).
func NewMux(a *Authenticator, instrument func(pattern string, h http.Handler) http.Handler) *Mux {
	return &Mux{mux: http.NewServeMux(), authn: a, instrument: instrument}
}

// Handle registers h for pattern ("METHOD /path"), for requests with scope s.
func (m *Mux) Handle(pattern string, s Scope, h http.Handler, opts ...RouteOption) {
	rt := Route{Pattern: pattern, Scope: s}
	for _, o := range opts {
		o(&rt)
	}
	h = m.authn.Require(s, h, opts...)
	if m.instrument != nil {
		h = m.instrument(pattern, h)
	}
	m.mux.Handle(pattern, h)
	m.routes = append(m.routes, rt)
}

// HandleFunc registers f like Handle.
func (m *Mux) HandleFunc(pattern string, s Scope, f func(http.ResponseWriter, *http.Request), opts ...RouteOption) {
	m.Handle(pattern, s, http.HandlerFunc(f), opts...)
}

// Routes lists the registered routes in registration order.
func (m *Mux) Routes() []Route { return append([]Route(nil), m.routes...) }

// ServeHTTP dispatches to the route.
func (m *Mux) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.mux.ServeHTTP(w, r) }

// Delegate sends every request that no route of m matches to the Mux that
// current returns (one built later, e.g. once storage is open), or to
// unavailable while current returns nil. That Mux's routes carry their own
// scopes.
func (m *Mux) Delegate(current func() *Mux, unavailable http.Handler) {
	m.mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if next := current(); next != nil {
			next.ServeHTTP(w, r)
			return
		}
		unavailable.ServeHTTP(w, r)
	}))
}
