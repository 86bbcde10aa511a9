package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/credentials"

	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/internal/config"
)

// TestTLSAndMutualTLS serves every listener with a certificate made here,
// then with client certificates required, and talks to each as its real
// clients do: the HTTP API with a Go client, OTLP/HTTP and OTLP/gRPC with
// the OpenTelemetry SDK's exporters. Bearer tokens are required on top.
func TestTLSAndMutualTLS(t *testing.T) {
	pki := newTestPKI(t)
	for _, tc := range []struct {
		name       string
		clientAuth string
	}{
		{"tls", ""},
		{"mutual tls", "RequireAndVerifyClientCert"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mtls := tc.clientAuth != ""
			hash, err := bcrypt.GenerateFromPassword([]byte("alice-pw"), bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			web := pki.webConfig(t, tc.clientAuth, "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"+
				"basic_auth_users:\n  alice: "+string(hash)+"\n  root: "+string(hash)+"\n")
			s := startSecured(t, func(c *config.Config) {
				c.Web.ConfigFile = web
				c.Auth.Users = []auth.UserConfig{{Name: "alice", Scopes: []auth.Scope{auth.ScopeRead}}}
			})
			var cert *tls.Certificate
			if mtls {
				cert = &pki.client
			}
			s.client = &http.Client{Transport: &http.Transport{TLSClientConfig: pki.clientTLS(cert), ForceAttemptHTTP2: true}}

			// The HTTP API, over TLS (HTTP/2), with a bearer token.
			resp, err := s.client.Get(s.url + "/-/healthy")
			if err != nil {
				t.Fatalf("GET /-/healthy over TLS: %v", err)
			}
			resp.Body.Close()
			if resp.TLS == nil || resp.ProtoMajor != 2 {
				t.Errorf("/-/healthy: TLS %v, protocol %s; want TLS and HTTP/2", resp.TLS != nil, resp.Proto)
			}
			if code, hdr, body := s.do(t, "GET", "/api/v1/status/buildinfo", s.tokens[auth.ScopeRead]); code != 200 || hdr.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("buildinfo over TLS: %d (headers %v) %s", code, hdr, body)
			}
			if code, _, _ := s.do(t, "GET", "/api/v1/status/buildinfo", ""); code != 401 {
				t.Errorf("buildinfo over TLS without token: %d, want 401", code)
			}
			// Basic auth (the web config's users) next to the bearer tokens:
			// alice is given the read scope, root (not in auth.users) every scope.
			for _, tc := range []struct {
				user, pass, path string
				want             int
			}{
				{"alice", "alice-pw", "/api/v1/status/buildinfo", 200},
				{"alice", "alice-pw", "/api/v1/status/config", 403},
				{"alice", "wrong", "/api/v1/status/buildinfo", 401},
				{"root", "alice-pw", "/api/v1/status/config", 200},
			} {
				req, _ := http.NewRequest("GET", s.url+tc.path, nil)
				req.SetBasicAuth(tc.user, tc.pass)
				resp, err := s.client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.want {
					t.Errorf("basic auth %s:%s on %s: %d, want %d", tc.user, tc.pass, tc.path, resp.StatusCode, tc.want)
				}
			}
			// Plain HTTP on the TLS port is refused.
			plain, err := http.Get("http://" + s.cfg.Web.ListenAddress + "/api/v1/status/buildinfo")
			if err == nil {
				plain.Body.Close()
				if plain.StatusCode != http.StatusBadRequest {
					t.Errorf("plain HTTP to the TLS port: %d, want 400", plain.StatusCode)
				}
			}
			if mtls {
				for name, c := range map[string]*tls.Config{"no client certificate": pki.clientTLS(nil), "a certificate of another CA": pki.clientTLS(&pki.otherCAClient)} {
					cl := &http.Client{Transport: &http.Transport{TLSClientConfig: c}}
					if resp, err := cl.Get(s.url + "/-/healthy"); err == nil {
						resp.Body.Close()
						t.Errorf("HTTP API with %s: %d, want the handshake refused", name, resp.StatusCode)
					}
				}
			}

			// OTLP/HTTP and OTLP/gRPC with the SDK exporters.
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			clientTLS := pki.clientTLS(cert)
			bearer := func(sc auth.Scope) map[string]string {
				if sc == auth.ScopeNone {
					return nil
				}
				return map[string]string{"Authorization": "Bearer " + s.tokens[sc]}
			}
			export := func(transport string, clientTLS *tls.Config, sc auth.Scope, value int64) error {
				var exp sdkmetric.Exporter
				var err error
				if transport == "grpc" {
					exp, err = otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(s.cfg.Receivers.OTLP.GRPC.ListenAddress),
						otlpmetricgrpc.WithTLSCredentials(credentials.NewTLS(clientTLS)), otlpmetricgrpc.WithHeaders(bearer(sc)),
						otlpmetricgrpc.WithRetry(otlpmetricgrpc.RetryConfig{Enabled: false}), otlpmetricgrpc.WithTimeout(10*time.Second))
				} else {
					exp, err = otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpoint(s.cfg.Receivers.OTLP.HTTP.ListenAddress),
						otlpmetrichttp.WithTLSClientConfig(clientTLS), otlpmetrichttp.WithHeaders(bearer(sc)),
						otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{Enabled: false}), otlpmetrichttp.WithTimeout(10*time.Second))
				}
				if err != nil {
					t.Fatal(err)
				}
				res := otelResource("tls-"+transport, "v1")
				mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))))
				c, _ := mp.Meter("tls").Int64Counter("tls.requests", metric.WithUnit("{request}"))
				c.Add(ctx, value)
				return mp.Shutdown(ctx)
			}
			for _, transport := range []string{"http", "grpc"} {
				if err := export(transport, clientTLS, auth.ScopeWrite, 7); err != nil {
					t.Errorf("OTLP/%s over TLS with a write token: %v", transport, err)
				}
				if err := export(transport, clientTLS, auth.ScopeNone, 1); err == nil || !strings.Contains(err.Error(), map[string]string{"http": "401", "grpc": "Unauthenticated"}[transport]) {
					t.Errorf("OTLP/%s without a token: %v, want it refused as unauthenticated", transport, err)
				}
				if err := export(transport, clientTLS, auth.ScopeRead, 1); err == nil || !strings.Contains(err.Error(), map[string]string{"http": "403", "grpc": "PermissionDenied"}[transport]) {
					t.Errorf("OTLP/%s with a read token: %v, want it refused for its scope", transport, err)
				}
				if mtls {
					if err := export(transport, pki.clientTLS(nil), auth.ScopeWrite, 1); err == nil {
						t.Errorf("OTLP/%s without a client certificate was accepted", transport)
					}
				}
				// What was written with the write token is there, and only that.
				q := fmt.Sprintf(`sum(tls_requests_total{job="shop/tls-%s"})`, transport)
				var last string
				eventuallyOK(t, 30*time.Second, q, func() bool {
					code, _, body := s.do(t, "GET", "/api/v1/query?query="+url.QueryEscape(q), s.tokens[auth.ScopeRead])
					last = fmt.Sprint(code, body)
					var r struct {
						Data struct {
							Result []struct {
								Value [2]any `json:"value"`
							} `json:"result"`
						} `json:"data"`
					}
					return code == 200 && json.Unmarshal([]byte(body), &r) == nil && len(r.Data.Result) == 1 && r.Data.Result[0].Value[1] == "7"
				}, &last)
			}
		})
	}
}

// eventuallyOK polls f; on timeout it fails showing *last.
func eventuallyOK(t *testing.T, timeout time.Duration, what string, f func() bool, last *string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if f() {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, *last)
}
