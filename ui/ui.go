// Package ui is Vigil's web UI, served by Vigil itself: a status page, the
// deployments with their verdicts, a page per verdict with its evidence and
// charts of the new version against its baseline, and a /graph page that
// draws a PromQL expression (where Alertmanager's "Source" links and the
// verdicts' links land). Pages are rendered on the server with html/template
// and inline SVG charts; there is no script and no build step, and the
// assets are embedded in the binary.
//
// The UI only reads: it takes the deploy hook, the query engine and the
// self-metrics registry through the small interfaces below, and every route
// needs the read scope.
package ui

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigilhq/vigil/deploy"
	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/auth"
)

// Deployments is where the UI reads deployments and verdicts (*deploy.Hook).
type Deployments interface {
	Deployments(service, environment string, limit int) []deploy.Deployment
	Verdicts(service string, limit int) []verdict.Verdict
	Verdict(id string) (verdict.Verdict, bool)
}

// Querier runs PromQL range queries (the embedded engine, under the query
// API's limits).
type Querier interface {
	QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]Series, error)
}

// Listener is an address Vigil serves on, for the status page.
type Listener struct {
	Name    string // "HTTP", "OTLP/gRPC", ...
	Address string
	Serves  string // what it serves
}

// Config is what the UI is built from.
type Config struct {
	Deployments Deployments
	Query       Querier
	// Metrics are Vigil's own metrics (the registry /metrics serves).
	Metrics prometheus.Gatherer

	Version   string
	Revision  string
	GoVersion string
	// Started is when Vigil started, for its uptime.
	Started   time.Time
	Listeners []Listener
	// StoragePath and Retention describe where the data is kept.
	StoragePath string
	Retention   string
	// Step is the verdicts' sampling step (deploy.step): the resolution of
	// the verdict charts.
	Step time.Duration
	// TraceURLTemplate links trace ids to a tracing UI: {trace_id} in it is
	// replaced by the id (web.trace_url_template).
	TraceURLTemplate string
	// GrafanaURL, when set, sends /graph to Grafana's Explore with the
	// datasource GrafanaDatasourceUID (web.grafana_url).
	GrafanaURL           string
	GrafanaDatasourceUID string

	Logger *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// TracePlaceholder is what web.trace_url_template marks the trace id with.
const TracePlaceholder = "{trace_id}"

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case c.Deployments == nil:
		return errors.New("ui: no deployments source")
	case c.Query == nil:
		return errors.New("ui: no querier")
	case c.Metrics == nil:
		return errors.New("ui: no metrics gatherer")
	}
	if err := ValidateTraceURLTemplate(c.TraceURLTemplate); err != nil {
		return err
	}
	if c.GrafanaURL != "" {
		if u, err := url.Parse(c.GrafanaURL); err != nil || u.Scheme == "" || u.Host == "" {
			return fmt.Errorf("grafana_url %q must be an absolute URL", c.GrafanaURL)
		}
	}
	return nil
}

// ValidateTraceURLTemplate checks web.trace_url_template: empty, or an
// absolute URL holding {trace_id}.
func ValidateTraceURLTemplate(t string) error {
	if t == "" {
		return nil
	}
	if !strings.Contains(t, TracePlaceholder) {
		return fmt.Errorf("trace_url_template %q must contain %s, where the trace id goes", t, TracePlaceholder)
	}
	u, err := url.Parse(strings.ReplaceAll(t, TracePlaceholder, "0"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("trace_url_template %q must be an absolute http(s) URL", t)
	}
	return nil
}

// UI serves the web pages.
type UI struct {
	cfg    Config
	pages  map[string]*template.Template
	static http.Handler
	logger *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	samples []metricSample // self-metrics every sampleInterval, oldest first
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// New builds the UI.
func New(cfg Config) (*UI, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u := &UI{cfg: cfg, logger: cfg.Logger, now: cfg.Now, pages: map[string]*template.Template{}}
	if u.logger == nil {
		u.logger = slog.New(slog.DiscardHandler)
	}
	if u.now == nil {
		u.now = time.Now
	}
	if u.cfg.Step <= 0 {
		u.cfg.Step = 15 * time.Second
	}
	if u.cfg.GrafanaDatasourceUID == "" {
		u.cfg.GrafanaDatasourceUID = "vigil"
	}
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/chart.html")
	if err != nil {
		return nil, fmt.Errorf("ui templates: %w", err)
	}
	for _, p := range []string{"deployments", "verdict", "status", "graph", "error"} {
		t, err := template.Must(base.Clone()).ParseFS(templateFS, "templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("ui template %s: %w", p, err)
		}
		u.pages[p] = t
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	u.static = http.StripPrefix("/static/", http.FileServerFS(sub))
	return u, nil
}

// Mux is where the UI registers its routes, each with its scope (*auth.Mux).
type Mux interface {
	Handle(pattern string, scope auth.Scope, h http.Handler, opts ...auth.RouteOption)
}

// Register adds the pages to mux; every one needs the read scope.
func (u *UI) Register(mux Mux) {
	mux.Handle("GET /{$}", auth.ScopeRead, u.page(u.deployments))
	mux.Handle("GET /status", auth.ScopeRead, u.page(u.status))
	mux.Handle("GET /verdicts/{id}", auth.ScopeRead, u.page(u.verdict))
	mux.Handle("GET /graph", auth.ScopeRead, http.HandlerFunc(u.graph))
	mux.Handle("GET /static/", auth.ScopeRead, securityHeaders(u.static))
}

// pageFunc renders one page: the template's name, its data, an HTTP status.
type pageFunc func(r *http.Request) (name string, data any, code int)

func (u *UI) page(f pageFunc) http.Handler {
	return securityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, data, code := f(r)
		u.render(w, name, data, code)
	}))
}

// render executes a page into a buffer first, so that a template error is
// an error page, not half a page.
func (u *UI) render(w http.ResponseWriter, name string, data any, code int) {
	var b strings.Builder
	if err := u.pages[name].ExecuteTemplate(&b, "layout.html", layoutData{Page: name, Data: data, Version: u.cfg.Version}); err != nil {
		u.logger.Error("Rendering a UI page failed", "page", name, "err", err)
		http.Error(w, "rendering the page failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(b.String()))
}

// layoutData is what every page's layout reads.
type layoutData struct {
	Page    string
	Version string
	Data    any
}

// errorPage is the data of the error template.
type errorPage struct {
	Title   string
	Message string
}

func errorData(title, msg string) errorPage { return errorPage{Title: title, Message: msg} }

// securityHeaders: no script runs on these pages, none may frame them.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

// traceIDRE is what a trace id looks like (W3C: 32 hex digits; 16 for
// older 64-bit ids). Evidence comes from telemetry: anything else is shown
// but never put into a link.
var traceIDRE = regexp.MustCompile(`^[0-9a-fA-F]{16,32}$`)

// TraceURL is the tracing UI's link for a trace id, "" when no template is
// configured or the id is not a trace id.
func (u *UI) TraceURL(id string) string {
	if u.cfg.TraceURLTemplate == "" || !traceIDRE.MatchString(id) {
		return ""
	}
	return strings.ReplaceAll(u.cfg.TraceURLTemplate, TracePlaceholder, id)
}

// funcs are the template helpers.
var funcs = template.FuncMap{
	"right":  func(r rect) float64 { return r.X + r.W },
	"bottom": func(r rect) float64 { return r.Y + r.H },
	"minus":  func(a, b float64) float64 { return a - b },
	"plus":   func(a, b float64) float64 { return a + b },
	"short":  short,
}
