package deploy

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/vigilhq/vigil/internal/auth"
)

// The example integrations under kubernetes/examples are what users copy;
// these tests send what each tool would send to the paths the examples
// name and check the answer has what each tool reads.

func exampleURL(t *testing.T, base, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return base + u.RequestURI()
}

// exampleAuth is the Vigil the examples talk to: authentication on, with a
// deploy token "ci-token" (what the examples' placeholders stand for) and a
// read token.
func exampleAuth(t *testing.T) *testServer {
	t.Helper()
	return newTestServerWith(t, DefaultConfig(), testAuthenticator(t, map[string]auth.Scope{"ci": auth.ScopeDeploy, "grafana": auth.ScopeRead}), false)
}

func TestExampleArgoRollouts(t *testing.T) {
	s := exampleAuth(t)
	b, err := os.ReadFile(filepath.Join("kubernetes", "examples", "argo-rollouts-analysis.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var tmpl struct {
		Spec struct {
			Metrics []struct {
				SuccessCondition string `yaml:"successCondition"`
				FailureCondition string `yaml:"failureCondition"`
				Provider         struct {
					Web struct {
						Method  string `yaml:"method"`
						URL     string `yaml:"url"`
						Headers []struct {
							Key   string `yaml:"key"`
							Value string `yaml:"value"`
						} `yaml:"headers"`
						Body     string `yaml:"body"`
						JSONPath string `yaml:"jsonPath"`
					} `yaml:"web"`
				} `yaml:"provider"`
			} `yaml:"metrics"`
		} `yaml:"spec"`
	}
	if err := yaml.NewDecoder(strings.NewReader(string(b))).Decode(&tmpl); err != nil {
		t.Fatal(err)
	}
	web := tmpl.Spec.Metrics[0].Provider.Web
	args := strings.NewReplacer("{{args.service}}", "checkout", "{{args.version}}", "v2", "{{args.baseline}}", "v1", "{{args.vigil-token}}", "ci-token")
	body := args.Replace(web.Body)
	var header []string
	for _, h := range web.Headers {
		header = append(header, h.Key, args.Replace(h.Value))
	}
	if r := call(t, web.Method, exampleURL(t, s.URL, web.URL), body, "Content-Type", "application/json"); r.code != 401 {
		t.Fatalf("without the example's headers: %d, want 401", r.code)
	}
	r := call(t, web.Method, exampleURL(t, s.URL, web.URL), body, header...)
	if r.code/100 != 2 {
		t.Fatalf("%s %s: %d %s", web.Method, web.URL, r.code, r.Error)
	}
	// jsonPath {$.data.phase}: the envelope's data.phase.
	if web.JSONPath != "{$.data.phase}" {
		t.Fatalf("jsonPath %q", web.JSONPath)
	}
	var data map[string]any
	_ = json.Unmarshal(r.Data, &data)
	if data["phase"] != "running" {
		t.Errorf("phase = %v, want running", data["phase"])
	}
	for _, cond := range []string{tmpl.Spec.Metrics[0].SuccessCondition, tmpl.Spec.Metrics[0].FailureCondition} {
		if !strings.Contains(cond, `"rollback"`) {
			t.Errorf("condition %q does not test the rollback phase", cond)
		}
	}
}

func TestExampleFlagger(t *testing.T) {
	s := exampleAuth(t)
	b, err := os.ReadFile(filepath.Join("kubernetes", "examples", "flagger-canary.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var canary struct {
		Metadata struct{ Name, Namespace string }
		Spec     struct {
			Analysis struct {
				Webhooks []struct {
					Name, Type, URL string
					Metadata        map[string]string
				}
			}
		}
	}
	if err := yaml.Unmarshal(b, &canary); err != nil {
		t.Fatal(err)
	}
	// With no traffic yet the verdict is inconclusive: the rollout goes on,
	// the promotion waits, no rollback.
	want := map[string]int{"rollout": 200, "confirm-promotion": 412, "rollback": 412, "event": 201}
	for _, wh := range canary.Spec.Analysis.Webhooks {
		payload := map[string]any{"name": canary.Metadata.Name, "namespace": canary.Metadata.Namespace, "phase": "Progressing", "checksum": "6d9f8c7b5", "metadata": wh.Metadata}
		if wh.Type == "event" {
			payload["metadata"] = map[string]string{"eventMessage": "New revision detected!", "eventType": "Normal", "timestamp": "1763632800000"}
		}
		body, _ := json.Marshal(payload)
		// Flagger sends no header: the token is in the URL.
		if !strings.Contains(wh.URL, "access_token=REPLACE-WITH-FLAGGERS-TOKEN") {
			t.Errorf("%s webhook %s carries no access_token", wh.Type, wh.URL)
		}
		r := call(t, http.MethodPost, exampleURL(t, s.URL, strings.Replace(wh.URL, "REPLACE-WITH-FLAGGERS-TOKEN", "ci-token", 1)), string(body))
		if r.code != want[wh.Type] {
			t.Errorf("%s webhook %s: %d %s, want %d", wh.Type, wh.URL, r.code, r.Error, want[wh.Type])
		}
	}
}

func TestExampleSpinnakerStage(t *testing.T) {
	s := exampleAuth(t)
	b, err := os.ReadFile(filepath.Join("kubernetes", "examples", "spinnaker-webhook-stage.json"))
	if err != nil {
		t.Fatal(err)
	}
	var stage struct {
		Method, URL                       string
		CustomHeaders                     map[string]string `json:"customHeaders"`
		Payload                           map[string]string
		StatusURLResolution               string `json:"statusUrlResolution"`
		StatusURLJSONPath                 string `json:"statusUrlJsonPath"`
		StatusJSONPath                    string `json:"statusJsonPath"`
		SuccessStatuses, TerminalStatuses string
	}
	if err := json.Unmarshal(b, &stage); err != nil {
		t.Fatal(err)
	}
	stage.Payload["version"], stage.Payload["baseline"] = "v2", "v1" // what the SpEL expressions resolve to
	body, _ := json.Marshal(stage.Payload)
	// Spinnaker sends the stage's customHeaders, on the start and on every poll.
	var header []string
	for k, v := range stage.CustomHeaders {
		header = append(header, k, strings.Replace(v, "REPLACE-WITH-SPINNAKERS-TOKEN", "ci-token", 1))
	}
	r := call(t, stage.Method, exampleURL(t, s.URL, stage.URL), string(body), header...)
	if r.code/100 != 2 {
		t.Fatalf("start: %d %s", r.code, r.Error)
	}
	var data map[string]any
	_ = json.Unmarshal(r.Data, &data)
	if stage.StatusURLJSONPath != "$.data.statusUrl" || stage.StatusJSONPath != "$.data.phase" {
		t.Fatalf("paths %q %q", stage.StatusURLJSONPath, stage.StatusJSONPath)
	}
	statusURL, _ := data["statusUrl"].(string)
	if !strings.HasPrefix(statusURL, s.URL+"/api/v1/verify/") {
		t.Fatalf("statusUrl %q is not an absolute URL on the server", statusURL)
	}
	poll := call(t, http.MethodGet, statusURL, "", header...)
	_ = json.Unmarshal(poll.Data, &data)
	phase, _ := data["phase"].(string)
	// Spinnaker keeps polling while the status is in none of its lists.
	if poll.code != 200 || strings.Contains(stage.SuccessStatuses+","+stage.TerminalStatuses, phase) {
		t.Errorf("poll: %d phase %q", poll.code, phase)
	}
	for _, p := range []string{"promote"} {
		if !strings.Contains(stage.SuccessStatuses, p) {
			t.Errorf("successStatuses lacks %s", p)
		}
	}
	for _, p := range []string{"rollback", "inconclusive"} {
		if !strings.Contains(stage.TerminalStatuses, p) {
			t.Errorf("terminalStatuses lacks %s", p)
		}
	}
}

// TestExampleNotificationsSendTheToken: Argo CD notifications and
// Spinnaker's echo post deployment events with the headers their examples
// configure; without them Vigil answers 401.
func TestExampleNotificationsSendTheToken(t *testing.T) {
	s := exampleAuth(t)
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("kubernetes", "examples", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(read("argocd-notifications-cm.yaml"), &cm); err != nil {
		t.Fatal(err)
	}
	var argo struct {
		URL     string `yaml:"url"`
		Headers []struct{ Name, Value string }
	}
	if err := yaml.Unmarshal([]byte(cm.Data["service.webhook.vigil"]), &argo); err != nil {
		t.Fatal(err)
	}
	var argoHeader []string
	for _, h := range argo.Headers {
		// Argo CD replaces $vigil-token with that key of argocd-notifications-secret.
		argoHeader = append(argoHeader, h.Name, strings.Replace(h.Value, "$vigil-token", "ci-token", 1))
	}

	var echo struct {
		Webhooks struct {
			Rest struct {
				Endpoints []struct {
					URL     string            `yaml:"url"`
					Headers map[string]string `yaml:"headers"`
				} `yaml:"endpoints"`
			} `yaml:"rest"`
		} `yaml:"webhooks"`
	}
	if err := yaml.Unmarshal(read("spinnaker-echo-webhook.yml"), &echo); err != nil {
		t.Fatal(err)
	}
	ep := echo.Webhooks.Rest.Endpoints[0]
	var echoHeader []string
	for k, v := range ep.Headers {
		echoHeader = append(echoHeader, k, strings.Replace(v, "REPLACE-WITH-SPINNAKERS-TOKEN", "ci-token", 1))
	}

	for _, tc := range []struct {
		name, url, body string
		header          []string
	}{
		{"argo cd", argo.URL, "argocd.json", argoHeader},
		{"spinnaker echo", ep.URL, "spinnaker.json", echoHeader},
	} {
		body, err := os.ReadFile(filepath.Join("testdata", tc.body))
		if err != nil {
			t.Fatal(err)
		}
		if r := call(t, http.MethodPost, exampleURL(t, s.URL, tc.url), string(body)); r.code != 401 {
			t.Errorf("%s without its headers: %d, want 401", tc.name, r.code)
		}
		if r := call(t, http.MethodPost, exampleURL(t, s.URL, tc.url), string(body), tc.header...); r.code/100 != 2 {
			t.Errorf("%s with the example's headers %v: %d %s", tc.name, tc.header, r.code, r.Error)
		}
	}
}
