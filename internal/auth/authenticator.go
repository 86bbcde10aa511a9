package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/vigilhq/vigil/internal/webconfig"
)

// Reason is why a request was refused: the label of
// vigil_http_requests_unauthorized_total.
type Reason string

// The reasons a request is refused.
const (
	// ReasonMissing: no credential at all (401).
	ReasonMissing Reason = "missing"
	// ReasonInvalid: a credential that matches no token or user (401).
	ReasonInvalid Reason = "invalid"
	// ReasonScheme: an Authorization scheme other than Bearer or Basic (401).
	ReasonScheme Reason = "scheme"
	// ReasonSignature: a webhook signature that does not match (401).
	ReasonSignature Reason = "signature"
	// ReasonScope: a valid credential without the route's scope (403).
	ReasonScope Reason = "scope"
)

var reasons = []Reason{ReasonMissing, ReasonInvalid, ReasonScheme, ReasonSignature, ReasonScope}

// Authenticator checks the credentials of requests against the configured
// bearer tokens and basic-auth users. It is safe for concurrent use; Load
// swaps the whole set at once (start, SIGHUP, POST /-/reload).
type Authenticator struct {
	state        atomic.Pointer[state]
	unauthorized *prometheus.CounterVec
	logger       *slog.Logger

	// bcryptMu runs one bcrypt comparison at a time: they cost ~50 ms of
	// CPU each, and a flood of wrong passwords must not take every core
	// (exporter-toolkit does the same). cache remembers recent results.
	bcryptMu sync.Mutex
	cacheMu  sync.Mutex
	cache    map[[32]byte]bool
}

type state struct {
	enabled bool
	tokens  []token
	users   map[string]user
}

type token struct {
	name   string
	sum    [32]byte
	scopes []Scope
}

type user struct {
	hash   []byte
	scopes []Scope
}

func newToken(name, value string, scopes []Scope) token {
	return token{name: name, sum: sha256.Sum256([]byte(value)), scopes: slices.Clone(scopes)}
}

// New returns an Authenticator with authentication off until Load.
func New(logger *slog.Logger, reg prometheus.Registerer) *Authenticator {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &Authenticator{
		logger: logger,
		cache:  map[[32]byte]bool{},
		unauthorized: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_http_requests_unauthorized_total",
			Help: "HTTP and gRPC requests refused for their credentials, by reason (missing, invalid, scheme, signature: 401; scope: 403).",
		}, []string{"reason"}),
	}
	for _, r := range reasons {
		a.unauthorized.WithLabelValues(string(r))
	}
	if reg != nil {
		reg.MustRegister(a.unauthorized)
	}
	a.state.Store(&state{})
	return a
}

// Load reads the token files of cfg and the basic-auth users of web (nil:
// none) and makes them the credentials in force. On error nothing changes.
func (a *Authenticator) Load(cfg Config, web *webconfig.Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("auth.%w", err)
	}
	toks, err := readTokens(cfg.Tokens)
	if err != nil {
		return fmt.Errorf("auth.%w", err)
	}
	st := &state{tokens: toks, users: map[string]user{}}
	scopes := map[string][]Scope{}
	for _, u := range cfg.Users {
		scopes[u.Name] = u.Scopes
	}
	if web != nil {
		for name, hash := range web.Users {
			s, ok := scopes[name]
			if !ok {
				s = Scopes
			}
			st.users[name] = user{hash: []byte(hash), scopes: slices.Clone(s)}
		}
	}
	for _, u := range cfg.Users {
		if _, ok := st.users[u.Name]; !ok {
			return fmt.Errorf("auth.users: %q is not among the basic_auth_users of the web config file", u.Name)
		}
	}
	st.enabled = len(st.tokens) > 0 || len(st.users) > 0
	a.state.Store(st)
	a.cacheMu.Lock()
	clear(a.cache)
	a.cacheMu.Unlock()
	return nil
}

// Enabled reports whether requests must authenticate. When it is false
// every request is Anonymous.
func (a *Authenticator) Enabled() bool { return a != nil && a.state.Load().enabled }

// Summary describes the credentials in force, for the start-up log: token
// names with their scopes and basic-auth user names (never a secret).
func (a *Authenticator) Summary() []string {
	st := a.state.Load()
	var out []string
	for _, t := range st.tokens {
		out = append(out, fmt.Sprintf("token %s %v", t.name, t.scopes))
	}
	for _, name := range slices.Sorted(maps.Keys(st.users)) {
		out = append(out, fmt.Sprintf("user %s %v", name, st.users[name].scopes))
	}
	return out
}

// authenticate checks an Authorization header value (or gRPC metadata).
func (a *Authenticator) authenticate(header string) (Principal, Reason) {
	st := a.state.Load()
	scheme, cred, _ := strings.Cut(strings.TrimSpace(header), " ")
	cred = strings.TrimSpace(cred)
	switch {
	case header == "":
		return Principal{}, ReasonMissing
	case strings.EqualFold(scheme, "Bearer"):
		return st.bearer(cred)
	case strings.EqualFold(scheme, "Basic"):
		b, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			return Principal{}, ReasonInvalid
		}
		name, pass, ok := strings.Cut(string(b), ":")
		if !ok {
			return Principal{}, ReasonInvalid
		}
		return a.basic(st, name, pass)
	}
	return Principal{}, ReasonScheme
}

// bearer finds the token whose value is cred. Every token is compared, in
// constant time, whatever matches: neither the time taken nor the order of
// the tokens tells anything about their values.
func (st *state) bearer(cred string) (Principal, Reason) {
	if cred == "" {
		return Principal{}, ReasonInvalid
	}
	sum := sha256.Sum256([]byte(cred))
	found := -1
	for i := range st.tokens {
		if subtle.ConstantTimeCompare(sum[:], st.tokens[i].sum[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Principal{}, ReasonInvalid
	}
	t := st.tokens[found]
	return Principal{Name: t.name, Scopes: t.scopes}, ""
}

// fakeHash is compared against when the user does not exist, so that an
// unknown user takes as long as a wrong password.
var fakeHash = []byte("$2a$10$MOf5l5ZO/GWmm0iA/0N7lOikwIGcWH4b70X7WqXxZGfvZblpbMwUu")

func (a *Authenticator) basic(st *state, name, pass string) (Principal, Reason) {
	u, known := st.users[name]
	hash := u.hash
	if !known {
		hash = fakeHash
	}
	key := sha256.Sum256([]byte(name + "\x00" + string(hash) + "\x00" + pass))
	a.cacheMu.Lock()
	ok, cached := a.cache[key]
	a.cacheMu.Unlock()
	if !cached {
		a.bcryptMu.Lock()
		ok = bcrypt.CompareHashAndPassword(hash, []byte(pass)) == nil
		a.bcryptMu.Unlock()
		a.cacheMu.Lock()
		if len(a.cache) >= 256 {
			clear(a.cache)
		}
		a.cache[key] = ok
		a.cacheMu.Unlock()
	}
	if !ok || !known {
		return Principal{}, ReasonInvalid
	}
	return Principal{Name: name, Scopes: u.scopes}, ""
}

// refused counts a refusal.
func (a *Authenticator) refused(r Reason) { a.unauthorized.WithLabelValues(string(r)).Inc() }

// hasUsers reports whether basic-auth users are configured (to offer Basic
// in WWW-Authenticate).
func (a *Authenticator) hasUsers() bool { return len(a.state.Load().users) > 0 }
