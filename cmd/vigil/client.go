package main

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/alecthomas/kingpin/v2"
	promconfig "github.com/prometheus/common/config"
)

// clientAuth is how `vigil query` and `vigil verify` reach a Vigil that
// requires credentials or TLS, as promtool does: a Prometheus HTTP client
// configuration file (authorization, basic_auth, tls_config, ...), or just
// a file holding a bearer token.
type clientAuth struct {
	httpConfigFile  string
	bearerTokenFile string
}

// addHTTPConfigFlag adds --http.config.file to cmd.
func (a *clientAuth) addHTTPConfigFlag(cmd *kingpin.CmdClause) {
	cmd.Flag("http.config.file", "HTTP client configuration file, as promtool's (authorization, basic_auth, tls_config): for a Vigil with TLS or credentials.").
		Envar("VIGIL_HTTP_CONFIG_FILE").PlaceHolder("http.yml").StringVar(&a.httpConfigFile)
}

// addBearerTokenFlag adds --bearer-token-file to cmd.
func (a *clientAuth) addBearerTokenFlag(cmd *kingpin.CmdClause) {
	cmd.Flag("bearer-token-file", "File with the bearer token to send (a token of auth.tokens).").
		Envar("VIGIL_BEARER_TOKEN_FILE").StringVar(&a.bearerTokenFile)
}

// roundTripper builds the transport the flags ask for (nil: the default).
func (a *clientAuth) roundTripper() (http.RoundTripper, error) {
	if a.httpConfigFile == "" && a.bearerTokenFile == "" {
		return nil, nil
	}
	if a.httpConfigFile != "" && a.bearerTokenFile != "" {
		return nil, errors.New("--http.config.file and --bearer-token-file exclude each other: put the token in the file's authorization.credentials_file")
	}
	cfg := promconfig.DefaultHTTPClientConfig
	if a.httpConfigFile != "" {
		c, _, err := promconfig.LoadHTTPConfigFile(a.httpConfigFile)
		if err != nil {
			return nil, fmt.Errorf("--http.config.file %s: %w", a.httpConfigFile, err)
		}
		cfg = *c
	} else {
		cfg.Authorization = &promconfig.Authorization{Type: "Bearer", CredentialsFile: a.bearerTokenFile}
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("--bearer-token-file: %w", err)
		}
	}
	rt, err := promconfig.NewRoundTripperFromConfig(cfg, "vigil")
	if err != nil {
		return nil, fmt.Errorf("HTTP client: %w", err)
	}
	return rt, nil
}
