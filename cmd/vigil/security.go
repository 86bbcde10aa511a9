package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/internal/config"
	"github.com/vigilhq/vigil/internal/webconfig"
)

// security is what guards Vigil's listeners: the web configuration file
// (TLS, basic-auth users, headers) and the bearer tokens of auth.tokens.
// Both are read again on reload.
type security struct {
	authn   *auth.Authenticator
	tls     *webconfig.TLS // nil: plain text
	headers *webconfig.Headers
	logger  *slog.Logger

	mu   sync.Mutex
	web  *webconfig.Config // nil: no web config file
	mtls bool              // every connection presents a verified client certificate
}

func newSecurity(cfg config.Config, logger *slog.Logger, reg prometheus.Registerer) (*security, error) {
	s := &security{authn: auth.New(logger.With("component", "auth"), reg), headers: &webconfig.Headers{}, logger: logger}
	web, err := loadWebConfig(cfg.Web.ConfigFile)
	if err != nil {
		return nil, err
	}
	if s.tls, err = webconfig.NewTLS(web); err != nil {
		return nil, err
	}
	if err := s.authn.Load(cfg.Auth, web); err != nil {
		return nil, err
	}
	s.web, s.mtls = web, web != nil && web.ClientCertRequired()
	s.headers.Set(web)
	return s, nil
}

func loadWebConfig(path string) (*webconfig.Config, error) {
	if path == "" {
		return nil, nil
	}
	return webconfig.Load(path)
}

// authenticated reports whether every request proves who sent it: by a
// token, a basic-auth user or a client certificate.
func (s *security) authenticated() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authn.Enabled() || s.mtls
}

// reload applies the web config file and token files of cfg. Nothing
// changes when they cannot be read, and a reload may neither turn TLS on or
// off nor turn authentication off: those need a restart.
func (s *security) reload(cfg config.Config) error {
	web, err := loadWebConfig(cfg.Web.ConfigFile)
	if err != nil {
		return err
	}
	if web.TLSEnabled() != (s.tls != nil) {
		return errors.New("web config file: TLS cannot be turned on or off by a reload; restart Vigil")
	}
	mtls := web != nil && web.ClientCertRequired()
	was := s.authenticated()
	probe := auth.New(nil, nil)
	if err := probe.Load(cfg.Auth, web); err != nil {
		return err
	}
	if was && !probe.Enabled() && !mtls {
		return errors.New("auth: the new configuration authenticates nobody (no auth.tokens, basic_auth_users or client certificates); authentication cannot be turned off by a reload, restart Vigil")
	}
	if s.tls != nil {
		if err := s.tls.Set(web); err != nil {
			return err
		}
	}
	if err := s.authn.Load(cfg.Auth, web); err != nil {
		return err
	}
	s.headers.Set(web)
	s.mu.Lock()
	s.web, s.mtls = web, mtls
	s.mu.Unlock()
	if !was && s.authenticated() {
		s.logger.Warn("Authentication is now on; rollback actions stay off until Vigil is restarted")
	}
	s.logger.Info("Credentials loaded", "credentials", strings.Join(s.authn.Summary(), ", "))
	return nil
}

// checkExposure is "secure by default": Vigil refuses to serve a
// non-loopback address to unauthenticated requests unless
// web.allow_unauthenticated says so.
func (s *security) checkExposure(cfg config.Config, logger *slog.Logger) error {
	if s.authenticated() {
		return nil
	}
	var open []string
	for _, a := range []string{cfg.Web.ListenAddress, cfg.Receivers.OTLP.GRPC.ListenAddress, cfg.Receivers.OTLP.HTTP.ListenAddress} {
		if a != "" && !loopback(a) {
			open = append(open, a)
		}
	}
	if len(open) == 0 {
		return nil
	}
	if cfg.Web.AllowUnauthenticated {
		logger.Warn("Serving without authentication on a non-loopback address (web.allow_unauthenticated: true): anyone who can reach it can read and write every series, start verifications and reload the configuration",
			"addresses", strings.Join(open, ", "))
		return nil
	}
	return fmt.Errorf(`refusing to serve %s without authentication: anyone who can reach it could read every series, write data and steer rollbacks.
Give each client a token of its own in vigil.yml (one line of random text per file, e.g. openssl rand -hex 32 > /etc/vigil/agents.token):

  auth:
    tokens:
      - {name: agents,  token_file: /etc/vigil/agents.token,  scopes: [write]}   # remote_write, OTLP, Loki push
      - {name: grafana, token_file: /etc/vigil/grafana.token, scopes: [read]}    # queries, verdicts, evidence
      - {name: ci,      token_file: /etc/vigil/ci.token,      scopes: [deploy]}  # deployment events, verify
      - {name: ops,     token_file: /etc/vigil/ops.token,     scopes: [admin]}   # reload, manual rollback, pprof

or give a web config file (--web.config.file) with basic_auth_users or client certificates,
or listen on 127.0.0.1, or set web.allow_unauthenticated: true to accept the risk. See docs/security.md`, strings.Join(open, ", "))
}

// loopback reports whether addr (host:port) listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
