package deploy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/vigilhq/vigil/deploy/verdict"
)

const (
	// backtestTimeout bounds one backtest through the API.
	backtestTimeout = 5 * time.Minute
	// defaultBacktestRange is the history a backtest replays when from is not given.
	defaultBacktestRange = 7 * 24 * time.Hour
	// maxBacktestPolicies bounds the policies one backtest compares.
	maxBacktestPolicies = 4
)

// CurrentPolicy is the policy the server runs with: deploy.policy,
// deploy.signals and deploy.window.
func (h *Hook) CurrentPolicy() BacktestPolicy {
	return BacktestPolicy{Name: "current", Window: h.cfg.Window, Policy: h.cfg.Policy, Signals: h.cfg.Signals}
}

// Backtest replays the recorded deployments opts selects over the stored
// data (with the current policy when opts has none). One runs at a time.
func (h *Hook) Backtest(ctx context.Context, opts BacktestOptions) (BacktestReport, error) {
	if !h.backtesting.CompareAndSwap(false, true) {
		return BacktestReport{}, errBacktestBusy
	}
	defer h.backtesting.Store(false)
	if len(opts.Policies) == 0 {
		opts.Policies = []BacktestPolicy{h.CurrentPolicy()}
	}
	if opts.Now.IsZero() {
		opts.Now = h.now()
	}
	b := Backtester{Querier: h.querier, Catalog: h.catalog, Step: time.Duration(h.cfg.Step), RateWindow: time.Duration(h.cfg.RateWindow), SeriesLabels: h.seriesLabels}
	return b.Run(ctx, h.store.List("", "", 0), opts)
}

var errBacktestBusy = errors.New("a backtest is already running; try again when it is done")

// BacktestQuery is what GET/POST /api/v1/backtest takes.
type BacktestQuery struct {
	Service, Environment string
	From, To             time.Time // zero: the last 7 days
	RollbackWithin       time.Duration
	// Policies are policy files' contents by name (none: the current policy).
	Policies map[string][]byte
	// PolicyOrder is the order of Policies.
	PolicyOrder []string
	// Labels is the labels CSV.
	Labels []byte
}

// Values encodes the query as form values.
func (q BacktestQuery) Values() url.Values {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set("service", q.Service)
	set("environment", q.Environment)
	if !q.From.IsZero() {
		set("from", q.From.UTC().Format(time.RFC3339))
	}
	if !q.To.IsZero() {
		set("to", q.To.UTC().Format(time.RFC3339))
	}
	if q.RollbackWithin > 0 {
		set("rollback_within", model.Duration(q.RollbackWithin).String())
	}
	for _, name := range q.PolicyOrder {
		v.Add("policy", name+"\n"+string(q.Policies[name]))
	}
	if len(q.Labels) > 0 {
		set("labels", string(q.Labels))
	}
	return v
}

// parseTime reads an RFC 3339 time or Unix seconds, as the Prometheus API does.
func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor Unix seconds", s)
	}
	return time.UnixMilli(int64(f * 1000)), nil
}

// handleBacktest answers GET and POST /api/v1/backtest: service,
// environment, from, to (default the last 7 days), rollback_within
// (default 60m), policy (repeatable, POST: "name\n" then the policy file's
// YAML; none: the current policy) and labels (the labels CSV).
func (h *Hook) handleBacktest(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8*maxPolicyBytes)
	if err := r.ParseForm(); err != nil {
		writeErr(w, http.StatusBadRequest, "bad_data", fmt.Errorf("backtest parameters: %w", err))
		return
	}
	opts, err := h.backtestOptions(r.Form)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "bad_data", err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), backtestTimeout)
	defer cancel()
	rep, err := h.Backtest(ctx, opts)
	switch {
	case errors.Is(err, errBacktestBusy):
		writeErr(w, http.StatusTooManyRequests, "unavailable", err)
	case err != nil && ctx.Err() != nil:
		writeErr(w, http.StatusServiceUnavailable, "timeout", fmt.Errorf("%w (the backtest takes at most %s: narrow it with service or from/to)", err, backtestTimeout))
	case err != nil:
		writeErr(w, http.StatusUnprocessableEntity, "execution", err)
	default:
		writeJSON(w, http.StatusOK, rep)
	}
}

func (h *Hook) backtestOptions(f url.Values) (BacktestOptions, error) {
	opts := BacktestOptions{Service: f.Get("service"), Environment: f.Get("environment"), To: h.now()}
	var err error
	if s := f.Get("to"); s != "" {
		if opts.To, err = parseTime(s); err != nil {
			return opts, fmt.Errorf("to: %w", err)
		}
	}
	opts.From = opts.To.Add(-defaultBacktestRange)
	if s := f.Get("from"); s != "" {
		if opts.From, err = parseTime(s); err != nil {
			return opts, fmt.Errorf("from: %w", err)
		}
	}
	if !opts.To.After(opts.From) {
		return opts, errors.New("to must be after from")
	}
	if s := f.Get("rollback_within"); s != "" {
		if opts.RollbackWithin, err = parseDuration(s); err != nil || opts.RollbackWithin <= 0 {
			return opts, fmt.Errorf("rollback_within: %q is not a positive duration such as 60m", s)
		}
	}
	policies := f["policy"]
	if len(policies) > maxBacktestPolicies {
		return opts, fmt.Errorf("policy: at most %d policies at once, got %d", maxBacktestPolicies, len(policies))
	}
	for i, p := range policies {
		name, body, _ := strings.Cut(p, "\n")
		if name = strings.TrimSpace(name); name == "" {
			name = fmt.Sprintf("policy%d", i+1)
		}
		bp, err := ParseBacktestPolicy(name, []byte(body), h.CurrentPolicy())
		if err != nil {
			return opts, err
		}
		opts.Policies = append(opts.Policies, bp)
	}
	if s := f.Get("labels"); s != "" {
		if opts.Labels, err = ParseTruthLabels(strings.NewReader(s)); err != nil {
			return opts, err
		}
	}
	return opts, nil
}

// Backtest asks the server for a backtest: POST /api/v1/backtest.
func (c Client) Backtest(ctx context.Context, q BacktestQuery) (BacktestReport, error) {
	var rep BacktestReport
	_, err := c.callAs(ctx, http.MethodPost, "/api/v1/backtest", nil, "application/x-www-form-urlencoded", []byte(q.Values().Encode()), &rep)
	return rep, err
}

var _ verdict.Querier = PromQL{}
