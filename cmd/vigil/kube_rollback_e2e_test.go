package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil/deploy"
	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/internal/peers"
	"github.com/vigilhq/vigil/internal/peers/kube"
)

// TestKubernetesRollbackE2E: the whole path the product exists for, with
// real parts only. A Deployment on a real kube-apiserver is rolled from v1
// to v2 by the real controller-manager; checkout's v1 and v2 send their
// spans over OTLP with the OpenTelemetry SDK to a real Vigil, v2 failing
// 15% of its requests; `vigil verify` gets a rollback verdict, and Vigil —
// whose catalog says the rollback is automatic, and which reaches the API
// server through a kubeconfig holding a ServiceAccount token bound to
// deploy/kubernetes/examples/rollback-rbac.yaml's Role and nothing else —
// rolls the Deployment back. The result must equal, field by field, a twin
// Deployment with the same history undone by `kubectl rollout undo`.
func TestKubernetesRollbackE2E(t *testing.T) {
	c := kube.StartForTest(t)
	cs := c.Client(t)
	appNS, twinNS, vigilNS := c.Namespace(t, nil), c.Namespace(t, nil), c.Namespace(t, nil)
	selector := map[string]string{"app": "checkout"}
	release := func(version string) kube.Release {
		return kube.Release{Cause: "ship " + version, Template: kube.PodTemplate(selector, "registry.example.com/shop/checkout:"+version)}
	}
	kube.ShipDeployment(t, cs, appNS, "checkout", selector, release("v1"), release("v2"))
	kube.ShipDeployment(t, cs, twinNS, "checkout", selector, release("v1"), release("v2"))

	root := filepath.Join("..", "..", "deploy", "kubernetes")
	c.ApplyFiles(t, map[string]string{"shop": appNS, "vigil": vigilNS, "": vigilNS},
		filepath.Join(root, "base", "serviceaccount.yaml"), filepath.Join(root, "examples", "rollback-rbac.yaml"))
	dir := t.TempDir()
	kubeconfig := c.WriteKubeconfig(t, dir, kube.ServiceAccountToken(t, cs, vigilNS, "vigil"))

	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The telemetry's service.namespace is shop; the Deployment lives in
	// the test's namespace, named under rollback.kubernetes.
	catalogFile := write("catalog.yml", `
services:
  - name: checkout
    namespace: shop
    environment: production
    rollback:
      automatic: true
      kubernetes:
        kind: Deployment
        namespace: `+appNS+`
        name: checkout
`)
	// Vigil acts only when requests are authenticated: CI gets a deploy token.
	section, tokens := tokenFiles(t, dir)
	cfg := write("vigil.yml", section+demoConfig+`  catalog: `+catalogFile+`
  kubernetes:
    enabled: true
    kubeconfig: `+kubeconfig+`
`)
	v := peers.StartVigil(t, "", "--config.file", cfg)
	base := v.URL()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	send := func(s simService) {
		wg.Go(func() {
			if err := s.run(ctx, v.OTLPHTTP); err != nil {
				t.Error(err)
			}
		})
	}
	send(simService{Service: "checkout", Version: "v1", RPS: 40, ErrorRatio: 0.005, Latency: 30 * time.Millisecond, ErrorMessage: "out of stock", Seed: 21, Token: tokens[auth.ScopeWrite]})
	time.Sleep(12 * time.Second)
	req, err := http.NewRequest("POST", base+"/api/v1/deployments",
		strings.NewReader(`{"service":"checkout","environment":"production","version":"v2","previousVersion":"v1","strategy":"canary"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tokens[auth.ScopeDeploy])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var recorded struct {
		Data deploy.Deployment `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&recorded); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("record deployment: %s %v", resp.Status, err)
	}
	resp.Body.Close()
	send(simService{Service: "checkout", Version: "v2", RPS: 40, ErrorRatio: 0.15, Latency: 90 * time.Millisecond, ErrorMessage: "payment declined", Seed: 22, Token: tokens[auth.ScopeWrite]})

	stdout, stderr, code := runVigil(t, "verify", "--server", base, "--bearer-token-file", filepath.Join(dir, "ci.token"),
		"--service", "checkout", "--version", "v2", "--wait", "100s")
	cancel()
	if code != verifyRollback {
		t.Fatalf("verify checkout v2: exit %d, want %d (rollback)\n%s\n%s", code, verifyRollback, stdout, stderr)
	}

	// Vigil acts on its own: the Deployment is back on v1 as revision 3.
	byVigil := kube.WaitRevision(t, cs, appNS, "checkout", 3)
	if img := byVigil.Spec.Template.Spec.Containers[0].Image; !strings.HasSuffix(img, ":v1") {
		t.Fatalf("image after Vigil's rollback: %s, want v1", img)
	}
	c.Kubectl(t, "", "rollout", "undo", "deployment/checkout", "-n", twinNS)
	byKubectl := kube.WaitRevision(t, cs, twinNS, "checkout", 3)
	if d := kube.DeploymentDiff(byKubectl, byVigil); d != "" {
		t.Errorf("Vigil's rollback differs from kubectl rollout undo (-kubectl +vigil):\n%s", d)
	}

	// The action is recorded with the deployment and counted.
	var got struct {
		Data deploy.Deployment `json:"data"`
	}
	eventually(t, 10*time.Second, "the action recorded with the deployment", func() bool {
		req, _ := http.NewRequest("GET", base+"/api/v1/deployments/"+recorded.Data.ID, nil)
		req.Header.Set("Authorization", "Bearer "+tokens[auth.ScopeRead])
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer r.Body.Close()
		return json.NewDecoder(r.Body).Decode(&got) == nil && len(got.Data.Actions) > 0
	})
	a := got.Data.Actions[0]
	if want := fmt.Sprintf("deployment/%s/checkout (from v2 to revision 1, v1)", appNS); len(got.Data.Actions) != 1 || !a.OK || a.Kind != "kubernetes" || a.Target != want {
		t.Errorf("actions = %+v, want one successful kubernetes action on %s", got.Data.Actions, want)
	}
	req, _ = http.NewRequest("GET", base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+tokens[auth.ScopeRead])
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if !strings.Contains(string(metrics), `vigil_rollback_actions_total{kind="kubernetes",result="success"} 1`) {
		t.Errorf("/metrics lacks the successful rollback action:\n%s", grepLines(string(metrics), "vigil_rollback_actions_total"))
	}
}
