package deploy

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var received = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

func TestDecodeRealPayloads(t *testing.T) {
	ts := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	fin := func(s string) *time.Time { v := ts(s); return &v }
	tests := []struct {
		format string
		params url.Values
		want   Deployment
	}{
		{FormatGeneric, nil, Deployment{Service: "checkout", Namespace: "shop", Environment: "production", Version: "v2.4.0", PreviousVersion: "v2.3.1",
			Pipeline: "github-actions:shop/checkout:deploy", Commit: "9f2c1e4b7a", Strategy: "canary", StartedAt: ts("2026-11-20T10:00:00Z"),
			URL: "https://github.com/shop/checkout/actions/runs/1234"}},
		{FormatSpinnaker, nil, Deployment{Service: "checkout", Namespace: "shop", Environment: "production", Version: "v2.4.0", PreviousVersion: "v2.3.1",
			Pipeline: "spinnaker:Deploy to production", Commit: "9f2c1e4b7a", Status: "SUCCEEDED",
			StartedAt: time.UnixMilli(1763632800000).UTC(), FinishedAt: new(time.UnixMilli(1763632860000).UTC())}},
		{FormatArgoCD, nil, Deployment{Service: "checkout", Namespace: "shop", Environment: "production", Version: "v2.4.0",
			Pipeline: "argocd:checkout-production", Commit: "9f2c1e4b7a3d5e6f708192a3b4c5d6e7f8091a2b", Status: "Succeeded",
			StartedAt: ts("2026-11-20T10:00:00Z"), FinishedAt: fin("2026-11-20T10:01:05Z")}},
		{FormatGitHub, nil, Deployment{Service: "checkout", Namespace: "shop", Environment: "production", Version: "v2.4.0", PreviousVersion: "v2.3.1",
			Pipeline: "github:shop/checkout", Commit: "9f2c1e4b7a3d5e6f708192a3b4c5d6e7f8091a2b", Status: "success",
			URL: "https://github.com/shop/checkout/actions/runs/1234/job/5678", StartedAt: ts("2026-11-20T10:00:00Z"), FinishedAt: fin("2026-11-20T10:01:05Z")}},
		{FormatFlagger, url.Values{"version": {"v2.4.0"}, "environment": {"production"}}, Deployment{Service: "checkout", Namespace: "shop", Environment: "production",
			Version: "v2.4.0", Strategy: "canary", Pipeline: "flagger:shop/checkout", Status: "Progressing", StartedAt: time.UnixMilli(1763632800000).UTC()}},
	}
	for _, tc := range tests {
		t.Run(tc.format, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join("testdata", tc.format+".json"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(tc.format, body, tc.params, received)
			if err != nil {
				t.Fatal(err)
			}
			tc.want.Source = tc.format
			if got.ID == "" {
				t.Error("no ID assigned")
			}
			got.ID = ""
			if !equalDeployment(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func equalDeployment(a, b Deployment) bool {
	fa, fb := a.FinishedAt, b.FinishedAt
	a.FinishedAt, b.FinishedAt = nil, nil
	if (fa == nil) != (fb == nil) || (fa != nil && !fa.Equal(*fb)) {
		return false
	}
	sa, sb := a.StartedAt, b.StartedAt
	a.StartedAt, b.StartedAt = time.Time{}, time.Time{}
	return sa.Equal(sb) && a.Service == b.Service && a.Namespace == b.Namespace && a.Environment == b.Environment &&
		a.Version == b.Version && a.PreviousVersion == b.PreviousVersion && a.Pipeline == b.Pipeline && a.Commit == b.Commit &&
		a.Strategy == b.Strategy && a.Source == b.Source && a.Status == b.Status && a.URL == b.URL
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name, format, body string
		params             url.Values
		field              string // the field the error must name
	}{
		{"generic without service", FormatGeneric, `{"version":"v2"}`, nil, "service: missing"},
		{"generic without version", FormatGeneric, `{"service":"checkout"}`, nil, "version: missing"},
		{"generic with a typo", FormatGeneric, `{"service":"checkout","vresion":"v2"}`, nil, `unknown field "vresion"`},
		{"generic with a number for a name", FormatGeneric, `{"service":7,"version":"v2"}`, nil, "service: want a string"},
		{"generic with a bad strategy", FormatGeneric, `{"service":"a","version":"v2","strategy":"yolo"}`, nil, "strategy"},
		{"generic with a bad time", FormatGeneric, `{"service":"a","version":"v2","startedAt":"yesterday"}`, nil, "generic payload"},
		{"generic finished before started", FormatGeneric, `{"service":"a","version":"v2","startedAt":"2026-11-20T10:00:00Z","finishedAt":"2026-11-20T09:00:00Z"}`, nil, "finishedAt"},
		{"empty body", FormatGeneric, ``, nil, "empty body"},
		{"not JSON", FormatGeneric, `service=checkout`, nil, "invalid character"},
		{"two documents", FormatGeneric, `{"service":"a","version":"b"} {}`, nil, "more than one"},
		{"unknown format", "jenkins", `{}`, nil, "unknown deployment event format"},
		{"spinnaker without details", FormatSpinnaker, `{"content":{}}`, nil, "details: missing"},
		{"spinnaker without execution", FormatSpinnaker, `{"details":{"type":"orca:pipeline:complete"},"content":{}}`, nil, "content.execution: missing"},
		{"spinnaker without a version", FormatSpinnaker, `{"details":{"application":"checkout"},"content":{"execution":{"application":"checkout","trigger":{}}}}`, nil, "version: missing"},
		{"argocd not an application", FormatArgoCD, `{"app":"checkout"}`, nil, "metadata: missing"},
		{"argocd without an image tag", FormatArgoCD, `{"metadata":{"name":"checkout"},"status":{"summary":{"images":["redis"]}}}`, nil, "version: missing"},
		{"github push event", FormatGitHub, `{"ref":"refs/heads/main","commits":[]}`, nil, "deployment_status: missing"},
		{"github without deployment", FormatGitHub, `{"deployment_status":{"state":"success"}}`, nil, "deployment: missing"},
		{"flagger without name", FormatFlagger, `{"namespace":"shop","phase":"Progressing"}`, nil, "name: missing"},
		{"flagger without version", FormatFlagger, `{"name":"checkout","namespace":"shop","phase":"Progressing"}`, nil, "metadata.version: missing"},
		{"flagger bad timestamp", FormatFlagger, `{"name":"checkout","metadata":{"timestamp":"noon","version":"v2"}}`, nil, "metadata.timestamp"},
		{"multi-line version", FormatGeneric, `{"service":"a","version":"v2\nv3"}`, nil, "version: must be a single line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.format, []byte(tc.body), tc.params, received)
			if err == nil {
				t.Fatalf("accepted %s", tc.body)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
		})
	}
	var fe *FieldError
	_, err := Decode(FormatGeneric, []byte(`{"version":"v2"}`), nil, received)
	if !errors.As(err, &fe) || fe.Field != "service" {
		t.Errorf("error %v is not a FieldError for service", err)
	}
}

func TestImageTag(t *testing.T) {
	for in, want := range map[string]string{
		"registry.example.com:5000/shop/checkout:v2": "v2",
		"registry.example.com:5000/shop/checkout":    "",
		"checkout:1.2@sha256:abc":                    "1.2",
		"redis":                                      "",
		"redis:":                                     "",
	} {
		if got := imageTag([]string{in}); got != want {
			t.Errorf("imageTag(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzDecode feeds every format arbitrary bytes: it must never panic, and
// whatever it accepts must be a valid deployment.
func FuzzDecode(f *testing.F) {
	for _, format := range Formats {
		body, err := os.ReadFile(filepath.Join("testdata", format+".json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(format, body)
	}
	f.Fuzz(func(t *testing.T, format string, body []byte) {
		d, err := Decode(format, body, url.Values{"version": {"v1"}}, received)
		if err != nil {
			return
		}
		if err := d.Validate(); err != nil || d.ID == "" {
			t.Fatalf("accepted an invalid deployment %+v: %v", d, err)
		}
	})
}
