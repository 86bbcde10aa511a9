// Package auth is who may do what: the scopes of Vigil's routes and the
// principal (the named token) a request was authenticated as.
package auth

import (
	"context"
	"slices"
)

// Scope is a class of routes a credential may use.
type Scope string

// The scopes. Every route has exactly one; /-/healthy and /-/ready need none.
const (
	// ScopeNone marks the routes everyone may use (probes).
	ScopeNone Scope = ""
	// ScopeWrite: remote_write, OTLP (HTTP and gRPC), Loki push.
	ScopeWrite Scope = "write"
	// ScopeRead: the query API, rules, alerts, verdicts, deployments list, evidence, the UI.
	ScopeRead Scope = "read"
	// ScopeDeploy: deployment events, verify, verdict hooks.
	ScopeDeploy Scope = "deploy"
	// ScopeAdmin: reload, manual rollback, pprof, status/config.
	ScopeAdmin Scope = "admin"
)

// Scopes lists the scopes a credential can be given, in the order the docs use.
var Scopes = []Scope{ScopeWrite, ScopeRead, ScopeDeploy, ScopeAdmin}

// Principal is who a request was authenticated as.
type Principal struct {
	// Name is the token's name from auth.tokens (or the basic-auth user);
	// "anonymous" when authentication is off.
	Name string
	// Scopes are what the credential may do.
	Scopes []Scope
}

// Anonymous is the principal of every request when authentication is off
// (Vigil on loopback, or web.allow_unauthenticated): it may do everything.
var Anonymous = Principal{Name: "anonymous", Scopes: Scopes}

// Has reports whether p may use routes of scope s.
func (p Principal) Has(s Scope) bool {
	return s == ScopeNone || slices.Contains(p.Scopes, s)
}

type principalKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal the request was authenticated as; ok is
// false when nothing authenticated it (a component called directly, a test).
func FromContext(ctx context.Context) (p Principal, ok bool) {
	p, ok = ctx.Value(principalKey{}).(Principal)
	return p, ok
}
