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

func TestExampleArgoRollouts(t *testing.T) {
	s := newTestServer(t, DefaultConfig())
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
						Method   string `yaml:"method"`
						URL      string `yaml:"url"`
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
	body := strings.NewReplacer("{{args.service}}", "checkout", "{{args.version}}", "v2", "{{args.baseline}}", "v1").Replace(web.Body)
	r := call(t, web.Method, exampleURL(t, s.URL, web.URL), body, "Content-Type", "application/json")
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
	s := newTestServer(t, DefaultConfig())
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
		r := call(t, http.MethodPost, exampleURL(t, s.URL, wh.URL), string(body))
		if r.code != want[wh.Type] {
			t.Errorf("%s webhook %s: %d %s, want %d", wh.Type, wh.URL, r.code, r.Error, want[wh.Type])
		}
	}
}

func TestExampleSpinnakerStage(t *testing.T) {
	s := newTestServer(t, DefaultConfig())
	b, err := os.ReadFile(filepath.Join("kubernetes", "examples", "spinnaker-webhook-stage.json"))
	if err != nil {
		t.Fatal(err)
	}
	var stage struct {
		Method, URL                       string
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
	r := call(t, stage.Method, exampleURL(t, s.URL, stage.URL), string(body))
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
	poll := call(t, http.MethodGet, statusURL, "")
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
