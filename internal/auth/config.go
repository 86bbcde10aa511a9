package auth

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Config is the auth: section of vigil.yml: the bearer tokens and what each
// may do. With at least one token, every route but /-/healthy and /-/ready
// needs a credential.
type Config struct {
	Tokens []TokenConfig `yaml:"tokens"`
	// Users gives scopes to the basic_auth_users of the web configuration
	// file (--web.config.file). A user not listed has every scope, as it
	// has in Prometheus.
	Users []UserConfig `yaml:"users"`
}

// TokenConfig is one bearer token.
type TokenConfig struct {
	// Name identifies the token in logs and metrics (never the token itself).
	Name string `yaml:"name"`
	// TokenFile holds the token (surrounding white space is ignored). It is
	// read again on every reload, so a token is rotated by rewriting the
	// file and reloading.
	TokenFile string `yaml:"token_file"`
	// Scopes are what the token may do: write, read, deploy, admin.
	Scopes []Scope `yaml:"scopes"`
}

// UserConfig gives scopes to a basic-auth user of the web configuration file.
type UserConfig struct {
	Name   string  `yaml:"name"`
	Scopes []Scope `yaml:"scopes"`
}

// Enabled reports whether tokens are configured.
func (c Config) Enabled() bool { return len(c.Tokens) > 0 }

// Validate checks names and scopes; CheckFiles checks the token files.
func (c Config) Validate() error {
	var errs []error
	names := map[string]bool{}
	for i, t := range c.Tokens {
		switch {
		case strings.TrimSpace(t.Name) == "":
			errs = append(errs, fmt.Errorf("tokens[%d]: name is missing", i))
		case names[t.Name]:
			errs = append(errs, fmt.Errorf("tokens[%d]: name %q is used twice", i, t.Name))
		}
		names[t.Name] = true
		if t.TokenFile == "" {
			errs = append(errs, fmt.Errorf("tokens[%d] (%s): token_file is missing", i, t.Name))
		}
		if err := validScopes(t.Scopes); err != nil {
			errs = append(errs, fmt.Errorf("tokens[%d] (%s): %w", i, t.Name, err))
		}
	}
	users := map[string]bool{}
	for i, u := range c.Users {
		switch {
		case u.Name == "":
			errs = append(errs, fmt.Errorf("users[%d]: name is missing", i))
		case users[u.Name]:
			errs = append(errs, fmt.Errorf("users[%d]: name %q is used twice", i, u.Name))
		}
		users[u.Name] = true
		if err := validScopes(u.Scopes); err != nil {
			errs = append(errs, fmt.Errorf("users[%d] (%s): %w", i, u.Name, err))
		}
	}
	return errors.Join(errs...)
}

func validScopes(s []Scope) error {
	if len(s) == 0 {
		return fmt.Errorf("scopes is empty: give one or more of %s", scopeList())
	}
	for _, sc := range s {
		if !slices.Contains(Scopes, sc) {
			return fmt.Errorf("scopes: unknown scope %q (known: %s)", sc, scopeList())
		}
	}
	return nil
}

func scopeList() string {
	var s []string
	for _, sc := range Scopes {
		s = append(s, string(sc))
	}
	return strings.Join(s, ", ")
}

// CheckFiles reads every token file: each must exist, be readable and hold
// a token, and no two tokens may be the same.
func (c Config) CheckFiles() error {
	_, err := readTokens(c.Tokens)
	return err
}

// placeholder starts the token values the Kubernetes manifests ship: Vigil
// refuses them, so that nobody runs with a token the whole world knows.
const placeholder = "REPLACE-ME"

// readTokens reads the token files.
func readTokens(cfgs []TokenConfig) ([]token, error) {
	var errs []error
	var out []token
	seen := map[[32]byte]string{}
	for i, t := range cfgs {
		b, err := os.ReadFile(t.TokenFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("tokens[%d] (%s): token_file: %w", i, t.Name, err))
			continue
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			errs = append(errs, fmt.Errorf("tokens[%d] (%s): token_file %s is empty", i, t.Name, t.TokenFile))
			continue
		}
		if strings.HasPrefix(v, placeholder) {
			errs = append(errs, fmt.Errorf("tokens[%d] (%s): token_file %s still holds the placeholder shipped with the manifests: write a token of your own (e.g. openssl rand -hex 32)", i, t.Name, t.TokenFile))
			continue
		}
		if strings.ContainsAny(v, " \t\r\n") {
			errs = append(errs, fmt.Errorf("tokens[%d] (%s): token_file %s holds more than one word: a token is one line without spaces", i, t.Name, t.TokenFile))
			continue
		}
		tok := newToken(t.Name, v, t.Scopes)
		if other, dup := seen[tok.sum]; dup {
			errs = append(errs, fmt.Errorf("tokens[%d] (%s): the same token as %q: give each client its own token", i, t.Name, other))
			continue
		}
		seen[tok.sum] = t.Name
		out = append(out, tok)
	}
	return out, errors.Join(errs...)
}
