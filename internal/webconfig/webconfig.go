// Package webconfig is Prometheus's web configuration file (the
// --web.config.file of Prometheus and the exporters): TLS
// (tls_server_config), basic-auth users (basic_auth_users, bcrypt hashes),
// response headers and HTTP/2 (http_server_config), and rate_limit.
//
// The file is parsed and validated by github.com/prometheus/exporter-toolkit's
// own types and checks, so that it means exactly what it means to
// Prometheus. Vigil does not hand its listeners to exporter-toolkit's
// Serve, because that demands basic auth on every request, which rules out
// Vigil's scoped bearer tokens (Authorization: Bearer) on the same
// listener; the users are checked by internal/auth instead, next to the
// tokens.
package webconfig

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"
	"golang.org/x/time/rate"
)

// Config is a loaded web configuration file.
type Config struct {
	// Path is the file it was read from.
	Path string
	web.Config
}

// Load reads and validates the web configuration file at path with
// exporter-toolkit's rules (strict keys, bcrypt hashes, allowed headers,
// readable certificate and key).
func Load(path string) (*Config, error) {
	if err := web.Validate(path); err != nil {
		return nil, fmt.Errorf("web config file %s: %w", path, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("web config file: %w", err)
	}
	// The defaults exporter-toolkit applies before decoding.
	c := &Config{Path: path, Config: web.Config{
		TLSConfig:  web.TLSConfig{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13},
		HTTPConfig: web.HTTPConfig{HTTP2: true},
	}}
	if err := yaml.UnmarshalStrict(b, &c.Config); err != nil {
		return nil, fmt.Errorf("web config file %s: %w", path, err)
	}
	c.TLSConfig.SetDirectory(filepath.Dir(path))
	return c, nil
}

// TLSEnabled reports whether the file configures TLS.
func (c *Config) TLSEnabled() bool { return c != nil && c.TLSConfig.IsEnabled() }

// ClientCertRequired reports whether every connection must present a
// client certificate signed by client_ca_file (mutual TLS).
func (c *Config) ClientCertRequired() bool {
	return c.TLSEnabled() && c.TLSConfig.ClientAuth == "RequireAndVerifyClientCert"
}

// TLS serves the TLS settings of the current web configuration. The
// certificate and key are read again on every handshake (exporter-toolkit
// does so, and cert-manager can rotate them in place); the rest of the file
// (client CA, versions, ciphers) is taken on Set, i.e. at start and reload.
type TLS struct {
	cur   atomic.Pointer[tls.Config]
	http2 atomic.Bool
}

// NewTLS builds the TLS settings of c; nil when c configures no TLS.
func NewTLS(c *Config) (*TLS, error) {
	if !c.TLSEnabled() {
		return nil, nil
	}
	t := &TLS{}
	if err := t.Set(c); err != nil {
		return nil, err
	}
	return t, nil
}

// Set replaces the settings with those of c. It fails, keeping the old
// settings, when c's certificate, key or client CA cannot be loaded, or when
// c turns TLS off (a listener cannot change from TLS to plain text).
func (t *TLS) Set(c *Config) error {
	if !c.TLSEnabled() {
		return errors.New("tls_server_config: TLS cannot be turned off on a running server; restart Vigil")
	}
	cfg, err := web.ConfigToTLSConfig(&c.TLSConfig)
	if err != nil {
		return fmt.Errorf("web config file %s: tls_server_config: %w", c.Path, err)
	}
	t.cur.Store(cfg)
	t.http2.Store(c.HTTPConfig.HTTP2)
	return nil
}

// ServerConfig is the tls.Config a listener is served with: every handshake
// takes the current settings. nextProtos are the ALPN protocols the server
// speaks (h2 is left out when http_server_config.http2 is false).
func (t *TLS) ServerConfig(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := t.cur.Load().Clone()
			for _, p := range nextProtos {
				if p == "h2" && !t.http2.Load() {
					continue
				}
				c.NextProtos = append(c.NextProtos, p)
			}
			return c, nil
		},
	}
}

// HTTP2 reports whether http_server_config.http2 allows HTTP/2.
func (t *TLS) HTTP2() bool { return t.http2.Load() }

// Headers is the http_server_config.headers and rate_limit of the current
// web configuration, applied to responses as exporter-toolkit does.
type Headers struct {
	cur atomic.Pointer[headerState]
}

type headerState struct {
	headers map[string]string
	limiter *rate.Limiter
}

// Set takes the headers and rate limit of c (nil: none).
func (h *Headers) Set(c *Config) {
	s := &headerState{}
	if c != nil {
		s.headers = c.HTTPConfig.Header
		if rl := c.RateLimiterConfig; rl.Interval > 0 {
			s.limiter = rate.NewLimiter(rate.Every(rl.Interval), rl.Burst)
		}
	}
	h.cur.Store(s)
}

// Wrap sets the configured headers on every response of next and answers
// 429 beyond rate_limit.
func (h *Headers) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := h.cur.Load()
		if s != nil {
			if s.limiter != nil && !s.limiter.Allow() {
				http.Error(w, "Too Many Requests: web config rate_limit", http.StatusTooManyRequests)
				return
			}
			for k, v := range s.headers {
				w.Header().Set(k, v)
			}
		}
		next.ServeHTTP(w, r)
	})
}
