package dashboards

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/internal/grafanatest"
)

// The push client is tested against internal/grafanatest, a server that
// implements the Grafana endpoints it uses as Grafana documents them: a real
// Grafana cannot be installed from this machine's package registries.

func pushAll(t *testing.T, cfg PushConfig, ds []Dashboard) ([]PushResult, error) {
	t.Helper()
	p, err := NewPusher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p.Push(context.Background(), ds)
}

func outcomes(rs []PushResult) map[string]string {
	m := map[string]string{}
	for _, r := range rs {
		m[r.UID] = r.Outcome
	}
	return m
}

func TestPushCreatesThenIsIdempotent(t *testing.T) {
	for _, tc := range []struct {
		name string
		srv  grafanatest.Options
		cfg  PushConfig
	}{
		{"bearer token", grafanatest.Options{Token: "glsa_secret"}, PushConfig{Token: "glsa_secret"}},
		{"basic auth", grafanatest.Options{User: "admin", Password: "pw"}, PushConfig{User: "admin", Password: "pw"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := grafanatest.New(t, tc.srv)
			cfg := tc.cfg
			cfg.URL = g.URL + "/" // a trailing slash is fine
			ds := generate(t)

			rs, err := pushAll(t, cfg, ds)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{}
			for _, d := range ds {
				want[d.UID()] = Created
			}
			if diff := cmp.Diff(want, outcomes(rs)); diff != "" {
				t.Fatalf("first push (-want +got):\n%s", diff)
			}
			folders := map[string]string{}
			for _, f := range g.Folders() {
				folders[f.Title] = f.UID
			}
			if diff := cmp.Diff(map[string]string{"Vigil": "vigil-vigil", "production": "vigil-production", "staging": "vigil-staging"}, folders); diff != "" {
				t.Fatalf("folders (-want +got):\n%s", diff)
			}
			for uid, folder := range map[string]string{
				"vigil-deployments": "vigil-vigil", "vigil-svc-checkout-production": "vigil-production", "vigil-svc-cart-staging": "vigil-staging",
			} {
				d, ok := g.Dashboard(uid)
				if !ok || d.FolderUID != folder || d.Version != 1 || d.Model["title"] == "" {
					t.Errorf("dashboard %s: %+v, want it in folder %s at version 1", uid, d, folder)
				}
			}
			if rs[0].URL != "/d/vigil-deployments/vigil-deployments" {
				t.Errorf("url %q", rs[0].URL)
			}

			// Pushing the same dashboards again saves nothing.
			saves := g.Count("POST", "/api/dashboards/db")
			rs, err = pushAll(t, cfg, ds)
			if err != nil {
				t.Fatal(err)
			}
			for uid, o := range outcomes(rs) {
				if o != Unchanged {
					t.Errorf("second push: %s %s, want unchanged", uid, o)
				}
			}
			if n := g.Count("POST", "/api/dashboards/db"); n != saves {
				t.Errorf("second push saved %d dashboards", n-saves)
			}
			if n := g.Count("POST", "/api/folders"); n != 3 {
				t.Errorf("%d folder creations, want 3", n)
			}
		})
	}
}

func TestPushUpdatesChangedDashboard(t *testing.T) {
	g := grafanatest.New(t, grafanatest.Options{Token: "t"})
	cfg := PushConfig{URL: g.URL, Token: "t"}
	cat, err := catalog.Load("testdata/catalog.yml")
	if err != nil {
		t.Fatal(err)
	}
	ds, err := Generate(cat, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pushAll(t, cfg, ds); err != nil {
		t.Fatal(err)
	}
	cat.Services[2].SLOs.Availability.Objective = 99.99 // checkout
	ds, err = Generate(cat, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	rs, err := pushAll(t, cfg, ds)
	if err != nil {
		t.Fatal(err)
	}
	got := outcomes(rs)
	if got["vigil-svc-checkout-production"] != Updated || got["vigil-svc-cart-production"] != Unchanged {
		t.Fatalf("outcomes %v", got)
	}
	if d, _ := g.Dashboard("vigil-svc-checkout-production"); d.Version != 2 {
		t.Errorf("version %d, want 2", d.Version)
	}
}

// A folder a person already made with the environment's name is reused.
func TestPushUsesExistingFolder(t *testing.T) {
	g := grafanatest.New(t, grafanatest.Options{})
	g.AddFolder("team-prod", "production")
	if _, err := pushAll(t, PushConfig{URL: g.URL}, generate(t)); err != nil {
		t.Fatal(err)
	}
	if d, _ := g.Dashboard("vigil-svc-checkout-production"); d.FolderUID != "team-prod" {
		t.Errorf("folder %q, want team-prod", d.FolderUID)
	}
	if n := len(g.Folders()); n != 3 {
		t.Errorf("%d folders, want 3", n)
	}
}

func TestPushReportsGrafanaErrors(t *testing.T) {
	ds := generate(t)
	untitled := ds[0]
	untitled.Model.Title = ptr("")
	for _, tc := range []struct {
		name string
		cfg  PushConfig
		ds   []Dashboard
		want string
	}{
		{"wrong token", PushConfig{Token: "nope"}, ds, "grafana GET /api/folders: 401: Unauthorized"},
		{"wrong password", PushConfig{User: "admin", Password: "nope"}, ds, "401: Unauthorized"},
		{"no credentials", PushConfig{}, ds, "401: Unauthorized"},
		{"invalid dashboard", PushConfig{Token: "t"}, []Dashboard{untitled}, "grafana POST /api/dashboards/db: 400: Dashboard title cannot be empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := grafanatest.New(t, grafanatest.Options{Token: "t"})
			tc.cfg.URL = g.URL
			_, err := pushAll(t, tc.cfg, tc.ds)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestPushUnreachable(t *testing.T) {
	g := grafanatest.New(t, grafanatest.Options{})
	url := g.URL
	g.Close()
	_, err := pushAll(t, PushConfig{URL: url}, generate(t)[:1])
	if err == nil || !strings.Contains(err.Error(), "grafana GET /api/folders") {
		t.Fatalf("error %v", err)
	}
}

func TestPushConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  PushConfig
		want string
	}{
		{PushConfig{URL: "http://grafana:3000"}, ""},
		{PushConfig{URL: "grafana:3000"}, "must be an http:// or https:// URL"},
		{PushConfig{URL: "http://g", Token: "t", User: "u"}, "not both"},
		{PushConfig{URL: "http://g", Password: "p"}, "without a user"},
	} {
		err := tc.cfg.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
