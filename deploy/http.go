package deploy

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/auth"
)

// Mux is where the hook registers its routes ("METHOD /path" patterns),
// each with the scope it needs (*auth.Mux).
type Mux interface {
	Handle(pattern string, scope auth.Scope, h http.Handler, opts ...auth.RouteOption)
}

// Register adds the deploy API to mux. Delivery tools that cannot send an
// Authorization header are let in where they call: GitHub by the
// X-Hub-Signature-256 of its webhook (deploy.github_secret_file), Flagger
// by a token in the URL (?access_token=), on its two routes only.
func (h *Hook) Register(mux Mux) {
	mux.Handle("POST /api/v1/deployments", auth.ScopeDeploy, h.eventHandler(FormatGeneric))
	mux.Handle("POST /api/v1/deployments/{format}", auth.ScopeDeploy, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.handleEvent(w, r, r.PathValue("format"))
	}))
	mux.Handle("POST /api/v1/deployments/"+FormatGitHub, auth.ScopeDeploy, h.eventHandler(FormatGitHub),
		auth.WithVerifier(githubSignature{key: h.ghKey, maxBytes: h.cfg.MaxBodyBytes}))
	mux.Handle("POST /api/v1/deployments/"+FormatFlagger, auth.ScopeDeploy, h.eventHandler(FormatFlagger), auth.QueryToken())
	mux.Handle("GET /api/v1/deployments", auth.ScopeRead, http.HandlerFunc(h.handleList))
	mux.Handle("GET /api/v1/deployments/{id}", auth.ScopeRead, http.HandlerFunc(h.handleGetDeployment))
	mux.Handle("POST /api/v1/deployments/{id}/rollback", auth.ScopeAdmin, http.HandlerFunc(h.handleRollback))
	mux.Handle("POST /api/v1/verify", auth.ScopeDeploy, http.HandlerFunc(h.handleVerify))
	mux.Handle("GET /api/v1/verify/{id}", auth.ScopeDeploy, http.HandlerFunc(h.handleVerifyStatus))
	mux.Handle("POST /api/v1/hooks/verdict", auth.ScopeDeploy, http.HandlerFunc(h.handleGate), auth.QueryToken())
	mux.Handle("GET /api/v1/verdicts", auth.ScopeRead, http.HandlerFunc(h.handleVerdicts))
	mux.Handle("GET /api/v1/verdicts/{id}", auth.ScopeRead, http.HandlerFunc(h.handleVerdict))
	mux.Handle("GET /api/v1/backtest", auth.ScopeRead, http.HandlerFunc(h.handleBacktest))
	mux.Handle("POST /api/v1/backtest", auth.ScopeRead, http.HandlerFunc(h.handleBacktest))
}

func (h *Hook) eventHandler(format string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.handleEvent(w, r, format) })
}

// githubSignature authenticates GitHub's webhook deliveries: a body whose
// X-Hub-Signature-256 is the HMAC of deploy.github_secret_file stands for
// GitHub with the deploy scope.
type githubSignature struct {
	key      []byte
	maxBytes int64
}

// GitHubPrincipal is who a validly signed GitHub event is recorded as.
var GitHubPrincipal = auth.Principal{Name: "github", Scopes: []auth.Scope{auth.ScopeDeploy}}

func (g githubSignature) Verify(r *http.Request) (auth.Principal, bool, bool) {
	sig := r.Header.Get("X-Hub-Signature-256")
	if sig == "" || len(g.key) == 0 {
		return auth.Principal{}, false, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, g.maxBytes+1))
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil || int64(len(body)) > g.maxBytes {
		return auth.Principal{}, true, false
	}
	if !validGitHubSignature(g.key, body, sig) {
		return auth.Principal{}, true, false
	}
	return GitHubPrincipal, true, true
}

type envelope struct {
	Status    string `json:"status"`
	Data      any    `json:"data,omitempty"`
	ErrorType string `json:"errorType,omitempty"`
	Error     string `json:"error,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, data any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(envelope{Status: "success", Data: data})
}

func writeErr(w http.ResponseWriter, code int, typ string, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(envelope{Status: "error", ErrorType: typ, Error: err.Error()})
}

func (h *Hook) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeErr(w, http.StatusRequestEntityTooLarge, "bad_data", fmt.Errorf("body larger than %d bytes", h.cfg.MaxBodyBytes))
			return nil, false
		}
		writeErr(w, http.StatusBadRequest, "bad_data", fmt.Errorf("read body: %w", err))
		return nil, false
	}
	return b, true
}

func (h *Hook) handleEvent(w http.ResponseWriter, r *http.Request, format string) {
	if format == "" {
		format = FormatGeneric
	}
	if format == FormatGitHub {
		switch ev := r.Header.Get("X-GitHub-Event"); ev {
		case "ping":
			writeJSON(w, http.StatusOK, map[string]string{"message": "pong"})
			return
		case "", "deployment_status":
		default:
			writeJSON(w, http.StatusAccepted, map[string]string{"message": fmt.Sprintf("ignored GitHub event %q: only deployment_status is recorded", ev)})
			return
		}
	}
	body, ok := h.readBody(w, r)
	if !ok {
		return
	}
	if format == FormatGitHub && h.ghKey != nil && !validGitHubSignature(h.ghKey, body, r.Header.Get("X-Hub-Signature-256")) {
		h.events.WithLabelValues(format, "rejected").Inc()
		writeErr(w, http.StatusUnauthorized, "unauthorized", errors.New("X-Hub-Signature-256 is missing or does not match deploy.github_secret_file"))
		return
	}
	d, err := Decode(format, body, r.URL.Query(), h.now())
	if err != nil {
		h.events.WithLabelValues(metricFormat(format), "rejected").Inc()
		writeErr(w, http.StatusBadRequest, "bad_data", err)
		return
	}
	rec, created, err := h.RecordDeployment(r.Context(), d)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", err)
		return
	}
	code, result := http.StatusOK, "updated"
	if created {
		code, result = http.StatusCreated, "recorded"
	}
	h.events.WithLabelValues(format, result).Inc()
	w.Header().Set("Location", "/api/v1/deployments/"+rec.ID)
	writeJSON(w, code, rec)
}

// validGitHubSignature checks GitHub's HMAC-SHA256 of the body ("sha256=<hex>").
func validGitHubSignature(key, body []byte, header string) bool {
	got, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	sig, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	return hmac.Equal(sig, mac.Sum(nil))
}

// metricFormat bounds the format label to the known formats.
func metricFormat(f string) string {
	for _, k := range Formats {
		if k == f {
			return f
		}
	}
	return "unknown"
}

func limitParam(r *http.Request, def int) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("invalid parameter \"limit\": %q is not a positive number", v)
	}
	return n, nil
}

func (h *Hook) handleList(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r, 100)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "bad_data", err)
		return
	}
	q := r.URL.Query()
	out := h.store.List(q.Get("service"), q.Get("environment"), limit)
	if out == nil {
		out = []Deployment{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Hook) handleGetDeployment(w http.ResponseWriter, r *http.Request) {
	d, ok := h.store.Get(r.PathValue("id"))
	if !ok {
		writeErr(w, http.StatusNotFound, "not_found", fmt.Errorf("no deployment %q", r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// VerifyStatus is the answer of the verify endpoints. Phase is "running"
// until the verdict is final, then the decision: it is what Spinnaker's
// webhook stage polls and Argo Rollouts' web metric reads.
type VerifyStatus struct {
	ID        string           `json:"id"`
	Phase     string           `json:"phase"`
	Decision  verdict.Decision `json:"decision"`
	Final     bool             `json:"final"`
	Score     float64          `json:"score"`
	StatusURL string           `json:"statusUrl"`
	Verdict   *verdict.Verdict `json:"verdict,omitempty"`
	// Error is why the last evaluation failed (a signal query the engine refused, ...).
	Error string `json:"error,omitempty"`
	// Watch is the watch that followed the promotion (deploy.watch): the
	// verification itself is final at its promotion, and its phase stays
	// promote whatever the watch finds.
	Watch *WatchStatus `json:"watch,omitempty"`
}

// WatchStatus is the state of the watch after a promotion.
type WatchStatus struct {
	// ID is the watch's own verification ID (GET /api/v1/verify/{id}).
	ID string `json:"id"`
	// Phase is "watching" until the watch ends, then its decision: rollback
	// (a regression after the promotion), promote, inconclusive or error.
	Phase     string           `json:"phase"`
	Decision  verdict.Decision `json:"decision"`
	Until     time.Time        `json:"until"`
	Summary   string           `json:"summary,omitempty"`
	StatusURL string           `json:"statusUrl"`
}

// Phases of a verification without a final verdict.
const (
	PhaseRunning = "running"
	// PhaseWatching is the phase of the watch after a promotion.
	PhaseWatching = "watching"
)

func (j *job) status() VerifyStatus {
	j.mu.Lock()
	s := VerifyStatus{ID: j.id, Phase: PhaseRunning, Decision: verdict.Inconclusive, StatusURL: "/api/v1/verify/" + j.id, Error: j.lastErr}
	if j.stage == verdict.StageWatch {
		s.Phase = PhaseWatching
	}
	if j.latest != nil {
		v := *j.latest
		s.Verdict, s.Decision, s.Score, s.Final = &v, v.Decision, v.Score, v.Final
		if v.Final {
			s.Phase = string(v.Decision)
		}
	}
	w := j.watch
	j.mu.Unlock()
	if w != nil {
		ws := w.status()
		s.Watch = &WatchStatus{ID: w.id, Phase: ws.Phase, Decision: ws.Decision, StatusURL: ws.StatusURL,
			Until: w.req.Watch.From.Add(w.req.Watch.Duration).UTC()}
		if ws.Verdict != nil {
			s.Watch.Summary = ws.Verdict.Summary
		}
	}
	return s
}

// principal is who the request was authenticated as: anonymous when
// nothing authenticated it (authentication off).
func principal(r *http.Request) auth.Principal {
	if p, ok := auth.FromContext(r.Context()); ok {
		return p
	}
	return auth.Anonymous
}

// writeStartErr answers a verification that could not be started.
func writeStartErr(w http.ResponseWriter, err error) {
	var re *RequestError
	switch {
	case errors.As(err, &re) && re.Code == http.StatusForbidden:
		writeErr(w, re.Code, "forbidden", err)
	case errors.As(err, &re):
		writeErr(w, re.Code, "bad_data", err)
	case errors.Is(err, errTooMany), errors.Is(err, errClosed):
		writeErr(w, http.StatusTooManyRequests, "unavailable", err)
	default:
		writeErr(w, http.StatusInternalServerError, "internal", err)
	}
}

// decodeVerify reads a verify request from the JSON body and/or the query
// string (service, environment, version, baseline, window).
func (h *Hook) decodeVerify(w http.ResponseWriter, r *http.Request) (VerifyRequest, bool) {
	var vr VerifyRequest
	body, ok := h.readBody(w, r)
	if !ok {
		return vr, false
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := unmarshal("verify", body, &vr, true); err != nil {
			writeErr(w, http.StatusBadRequest, "bad_data", err)
			return vr, false
		}
	}
	q := r.URL.Query()
	for k, dst := range map[string]*string{"service": &vr.Service, "environment": &vr.Environment, "version": &vr.Version, "baseline": &vr.Baseline, "window": &vr.Window} {
		if v := q.Get(k); v != "" && *dst == "" {
			*dst = v
		}
	}
	return vr, true
}

func (h *Hook) handleVerify(w http.ResponseWriter, r *http.Request) {
	vr, ok := h.decodeVerify(w, r)
	if !ok {
		return
	}
	h.startAndAnswer(w, r, vr)
}

func (h *Hook) startAndAnswer(w http.ResponseWriter, r *http.Request, vr VerifyRequest) {
	st, created, err := h.StartVerification(r.Context(), principal(r), vr)
	if err != nil {
		if st.ID == "" {
			writeStartErr(w, err)
			return
		}
		h.logger.Warn("Verification evaluation failed", "id", st.ID, "err", err)
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	st.StatusURL = absURL(r, st.StatusURL)
	w.Header().Set("Location", st.StatusURL)
	writeJSON(w, code, st)
}

// absURL makes path absolute on the host the request came to, so that
// tools polling the Location or statusUrl (Spinnaker) can follow it.
func absURL(r *http.Request, path string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		scheme = p
	}
	host := r.Host
	if h := r.Header.Get("X-Forwarded-Host"); h != "" {
		host = h
	}
	if host == "" {
		return path
	}
	return scheme + "://" + host + path
}

func (h *Hook) handleVerifyStatus(w http.ResponseWriter, r *http.Request) {
	st, found, err := h.Get(r.PathValue("id"))
	if !found {
		writeErr(w, http.StatusNotFound, "not_found", fmt.Errorf("no verification %q (verifications are kept in memory for a day; verdicts under /api/v1/verdicts)", r.PathValue("id")))
		return
	}
	if err != nil {
		h.logger.Warn("Verification evaluation failed", "id", st.ID, "err", err)
	}
	st.StatusURL = absURL(r, st.StatusURL)
	if st.Watch != nil {
		st.Watch.StatusURL = absURL(r, st.Watch.StatusURL)
	}
	writeJSON(w, http.StatusOK, st)
}

// handleGate is the webhook gate for Flagger (and any tool that reads the
// HTTP status): it accepts Flagger's webhook payload or a verify request
// and answers 200 to go on and 412 to halt. ?type= says which question is
// asked: rollout (default; halt only on rollback), confirm-promotion (go
// only on promote) or rollback (200 means roll back now).
func (h *Hook) handleGate(w http.ResponseWriter, r *http.Request) {
	body, ok := h.readBody(w, r)
	if !ok {
		return
	}
	var vr VerifyRequest
	var probe map[string]json.RawMessage
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := json.Unmarshal(body, &probe); err != nil {
			writeErr(w, http.StatusBadRequest, "bad_data", fmt.Errorf("hook payload: %w", err))
			return
		}
	}
	if _, isFlagger := probe["name"]; isFlagger && probe["service"] == nil {
		var fe flaggerEvent
		if err := unmarshal(FormatFlagger, body, &fe, false); err != nil {
			writeErr(w, http.StatusBadRequest, "bad_data", err)
			return
		}
		vr = VerifyRequest{Service: first(fe.Metadata["service"], fe.Name), Environment: fe.Metadata["environment"],
			Version: fe.Metadata["version"], Baseline: fe.Metadata["baseline"], Window: fe.Metadata["window"]}
	} else if len(probe) > 0 {
		if err := unmarshal("verify", body, &vr, true); err != nil {
			writeErr(w, http.StatusBadRequest, "bad_data", err)
			return
		}
	}
	q := r.URL.Query()
	for k, dst := range map[string]*string{"service": &vr.Service, "environment": &vr.Environment, "version": &vr.Version, "baseline": &vr.Baseline, "window": &vr.Window} {
		if v := q.Get(k); v != "" && *dst == "" {
			*dst = v
		}
	}
	st, _, err := h.StartVerification(r.Context(), principal(r), vr)
	if err != nil && st.ID == "" {
		writeStartErr(w, err)
		return
	}
	st.StatusURL = absURL(r, st.StatusURL)
	var goOn bool
	switch t := q.Get("type"); t {
	case "", "rollout", "pre-rollout":
		goOn = st.Decision != verdict.Rollback
	case "confirm-promotion", "confirm-rollout":
		goOn = st.Final && st.Decision == verdict.Promote
	case "rollback":
		goOn = st.Decision == verdict.Rollback
	default:
		writeErr(w, http.StatusBadRequest, "bad_data", fmt.Errorf("type %q is not rollout, pre-rollout, confirm-promotion, confirm-rollout or rollback", t))
		return
	}
	code := http.StatusOK
	if !goOn {
		code = http.StatusPreconditionFailed
	}
	w.Header().Set("Location", st.StatusURL)
	writeJSON(w, code, st)
}

func (h *Hook) handleVerdicts(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r, 20)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "bad_data", err)
		return
	}
	q := r.URL.Query()
	env, version := q.Get("environment"), q.Get("version")
	var out []verdict.Verdict
	if env == "" && version == "" {
		out = h.Verdicts(q.Get("service"), limit)
	} else {
		for _, v := range h.Verdicts(q.Get("service"), 0) {
			if (env == "" || v.Environment == env) && (version == "" || v.Version == version) {
				out = append(out, v)
				if len(out) == limit {
					break
				}
			}
		}
	}
	if out == nil {
		out = []verdict.Verdict{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Hook) handleVerdict(w http.ResponseWriter, r *http.Request) {
	v, ok := h.Verdict(r.PathValue("id"))
	if !ok {
		writeErr(w, http.StatusNotFound, "not_found", fmt.Errorf("no verdict %q", r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// handleRollback performs the service's rollback actions for a deployment
// now (admin scope). Vigil acts only when requests are authenticated.
func (h *Hook) handleRollback(w http.ResponseWriter, r *http.Request) {
	if !h.act {
		writeErr(w, http.StatusForbidden, "forbidden", errors.New("rollback actions are off: Vigil acts only when requests are authenticated (auth.tokens)"))
		return
	}
	d, found := h.store.Get(r.PathValue("id"))
	if !found {
		writeErr(w, http.StatusNotFound, "not_found", fmt.Errorf("no deployment %q", r.PathValue("id")))
		return
	}
	if h.catalog == nil {
		writeErr(w, http.StatusConflict, "no_action", errors.New("no catalog configured (deploy.catalog): no rollback action is known"))
		return
	}
	svc, inCat := h.catalog.Service(d.Service, d.Environment)
	if !inCat {
		writeErr(w, http.StatusConflict, "no_action", fmt.Errorf("service %q is not in the catalog", d.Service))
		return
	}
	v := verdict.Verdict{Service: d.Service, Environment: d.Environment, Version: d.Version, Baseline: d.PreviousVersion, DeploymentID: d.ID}
	v.Decision, v.Reason = verdict.Rollback, "manual rollback through the API"
	v.Summary = fmt.Sprintf("Rolled back by hand through the API by %s.", principal(r).Name)
	// A client going away does not cut a rollback short: each action has
	// its own timeout.
	recs := h.rollback(context.WithoutCancel(r.Context()), svc, d.ID, v, principal(r).Name)
	if len(recs) == 0 {
		writeErr(w, http.StatusConflict, "no_action", fmt.Errorf("service %q has no rollback action this Vigil can perform", d.Service))
		return
	}
	// Refused by the rate limits: nothing ran. (An actor's own refusal —
	// the target runs another version — is one of the records.)
	switch recs[0].Refused {
	case RefusedCooldown:
		writeErr(w, http.StatusTooManyRequests, "refused", errors.New(recs[0].Message))
	case RefusedAlreadyRolledBack:
		writeErr(w, http.StatusConflict, "refused", errors.New(recs[0].Message))
	default:
		writeJSON(w, http.StatusOK, recs)
	}
}
