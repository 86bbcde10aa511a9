package catalog

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLoadExample(t *testing.T) {
	c, err := Load("testdata/catalog.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Services) != 2 || c.Services[0].Name != "cart" {
		t.Fatalf("services not loaded and sorted: %+v", c.Services)
	}
	co, ok := c.Service("checkout", "production")
	if !ok {
		t.Fatal("checkout not found")
	}
	if co.Namespace != "shop" || co.RunbookURL == "" || co.Rollback.Kubernetes.Namespace != "shop" {
		t.Errorf("defaults not applied: %+v", co)
	}
	if k := co.Rollback.Kubernetes; k.Kind != KindDeployment || k.Name != "checkout" {
		t.Errorf("rollback.kubernetes defaults: kind %q name %q, want Deployment checkout", k.Kind, k.Name)
	}
	if got := time.Duration(co.SLOs.Availability.Window); got != 30*24*time.Hour {
		t.Errorf("availability window = %v", got)
	}
	if got := time.Duration(co.SLOs.Latency.Threshold); got != 300*time.Millisecond {
		t.Errorf("latency threshold = %v", got)
	}
	cart, _ := c.Service("cart", "")
	if got, want := cart.Selector(), `service="cart",namespace="shop",environment="production",cluster="eu-1"`; got != want {
		t.Errorf("Selector() = %s, want %s", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "services: []", "at least one service"},
		{"unknown key", "services:\n- name: a\n  slo: {}\n", "slo"},
		{"bad name", "services:\n- name: 'a b'\n", "not a valid service name"},
		{"objective", "services:\n- name: a\n  slos:\n    availability: {objective: 100}\n", "services[a].slos.availability.objective"},
		{"threshold", "services:\n- name: a\n  slos:\n    latency: {objective: 99}\n", "threshold"},
		{"matchers", "services:\n- name: a\n  matchers: 'x=='\n", "services[a].matchers"},
		{"duplicate", "services:\n- name: a\n- name: a\n", "twice"},
		{"automatic", "services:\n- name: a\n  rollback: {automatic: true}\n", "rollback.automatic"},
		{"kube kind", "services:\n- name: a\n  namespace: shop\n  rollback:\n    kubernetes: {kind: Job}\n", `services[a].rollback.kubernetes.kind: "Job" is not one of`},
		{"kube kind case", "services:\n- name: a\n  namespace: shop\n  rollback:\n    kubernetes: {kind: deployment}\n", "rollback.kubernetes.kind"},
		{"kube namespace", "services:\n- name: a\n  rollback:\n    kubernetes: {name: a}\n", "rollback.kubernetes.namespace: required"},
		{"kube bad namespace", "services:\n- name: a\n  rollback:\n    kubernetes: {namespace: Shop}\n", "rollback.kubernetes.namespace: \"Shop\""},
		{"kube name from service", "services:\n- name: checkout_api\n  namespace: shop\n  rollback:\n    kubernetes: {}\n", `rollback.kubernetes.name: "checkout_api" is not a valid Kubernetes object name`},
		{"kube deployment key for another kind", "services:\n- name: a\n  namespace: shop\n  rollback:\n    kubernetes: {kind: StatefulSet, deployment: a}\n", "rollback.kubernetes.deployment: only for kind Deployment"},
		{"kube deployment and name", "services:\n- name: a\n  namespace: shop\n  rollback:\n    kubernetes: {deployment: a, name: b}\n", "disagree"},
		{"kube container", "services:\n- name: a\n  namespace: shop\n  rollback:\n    kubernetes: {container: App}\n", "rollback.kubernetes.container"},
		{"kube unknown key", "services:\n- name: a\n  namespace: shop\n  rollback:\n    kubernetes: {deploymnet: a}\n", "deploymnet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestKubernetesRollbackKinds(t *testing.T) {
	for _, tc := range []struct {
		in                          string
		kind, namespace, name, cont string
	}{
		{"{}", KindDeployment, "shop", "checkout", ""},
		{"{deployment: web}", KindDeployment, "shop", "web", ""},
		{"{name: web, namespace: prod}", KindDeployment, "prod", "web", ""},
		{"{kind: StatefulSet, container: app}", KindStatefulSet, "shop", "checkout", "app"},
		{"{kind: DaemonSet, name: agent}", KindDaemonSet, "shop", "agent", ""},
		{"{kind: Rollout}", KindRollout, "shop", "checkout", ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			c, err := Parse([]byte("services:\n- name: checkout\n  namespace: shop\n  rollback:\n    kubernetes: " + tc.in + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			k := c.Services[0].Rollback.Kubernetes
			if k.Kind != tc.kind || k.Namespace != tc.namespace || k.Name != tc.name || k.Container != tc.cont {
				t.Errorf("got kind %q namespace %q name %q container %q, want %q %q %q %q", k.Kind, k.Namespace, k.Name, k.Container, tc.kind, tc.namespace, tc.name, tc.cont)
			}
		})
	}
}

func TestMatchersOn(t *testing.T) {
	s := Service{Name: "cart", Matchers: `cluster="eu-1", zone=~"a|b",version!="canary"`}
	if got := strings.Join(s.MatcherLabels(), " "); got != "cluster zone version" {
		t.Errorf("MatcherLabels() = %q", got)
	}
	for _, tc := range []struct {
		carried []string
		want    string
	}{
		{[]string{"cluster", "zone", "version"}, `cluster="eu-1",zone=~"a|b",version!="canary"`},
		{[]string{"service", "version"}, `version!="canary"`},
		{nil, ``},
	} {
		got := s.MatchersOn(func(l string) bool { return slices.Contains(tc.carried, l) })
		if got != tc.want {
			t.Errorf("MatchersOn(%v) = %s, want %s", tc.carried, got, tc.want)
		}
	}
	if got := (Service{Name: "x"}).MatchersOn(func(string) bool { return true }); got != "" {
		t.Errorf("no matchers: %q", got)
	}
}

func TestRollbackMode(t *testing.T) {
	for _, tc := range []struct {
		in, mode string
		after    bool
		err      string
	}{
		{"{}", ModeShadow, false, ""},
		{"{webhook: {url: http://x}}", ModeShadow, false, ""},
		{"{automatic: true, webhook: {url: http://x}}", ModeEnforce, false, ""},
		{"{mode: enforce, after_promotion: true, webhook: {url: http://x}}", ModeEnforce, true, ""},
		{"{mode: shadow, after_promotion: true}", ModeShadow, true, ""},
		{"{mode: enforce}", "", false, "rollback.mode: enforce needs rollback.kubernetes or rollback.webhook"},
		{"{mode: shadow, automatic: true, webhook: {url: http://x}}", "", false, "rollback.automatic: true means mode: enforce"},
		{"{mode: dry-run}", "", false, `rollback.mode: "dry-run" is not shadow or enforce`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			c, err := Parse([]byte("services:\n- name: checkout\n  rollback: " + tc.in + "\n"))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r := c.Services[0].Rollback
			if r.Mode != tc.mode || r.Enforced() != (tc.mode == ModeEnforce) || r.AfterPromotion != tc.after {
				t.Errorf("mode %q after_promotion %v, want %q %v", r.Mode, r.AfterPromotion, tc.mode, tc.after)
			}
		})
	}
}

func TestServiceSignals(t *testing.T) {
	for _, tc := range []struct {
		in, requests, errors, err string
	}{
		{"{requests: jobs_processed_total, errors: jobs_failed_total, unit: jobs}",
			"sum((jobs_processed_total{$selector} - jobs_processed_total{$selector} offset $step) >= 0 or jobs_processed_total{$selector})",
			"sum((jobs_failed_total{$selector} - jobs_failed_total{$selector} offset $step) >= 0 or jobs_failed_total{$selector})", ""},
		{`{requests: jobs_total, errors: jobs_failed_total, selector: 'job="mailer",version="$version"'}`,
			`sum((jobs_total{job="mailer",version="$version"} - jobs_total{job="mailer",version="$version"} offset $step) >= 0 or jobs_total{job="mailer",version="$version"})`,
			`sum((jobs_failed_total{job="mailer",version="$version"} - jobs_failed_total{job="mailer",version="$version"} offset $step) >= 0 or jobs_failed_total{job="mailer",version="$version"})`, ""},
		{"{requests: 'sum(increase(jobs_total{$selector}[$step]))', errors: 'sum(increase(jobs_total{$selector,result=\"failed\"}[$step]))'}",
			"sum(increase(jobs_total{$selector}[$step]))", `sum(increase(jobs_total{$selector,result="failed"}[$step]))`, ""},
		{"{requests: jobs_total}", "", "", "signals.requests and errors: both required"},
		{`{requests: jobs_total, errors: failed_total, selector: 'job="mailer"'}`, "", "", "selects no version"},
		{"{requests: 'sum(rate(jobs_total[1m]))', errors: failed_total}", "", "", "signals.requests: \"sum(rate(jobs_total[1m]))\" selects no version"},
		{"{requests: 'sum(jobs_total{$selector}', errors: failed_total}", "", "", "signals.requests"},
		{`{requests: 'sum(x{$selector})', errors: 'sum(y{$selector})', selector: 'job="a"'}`, "", "", "selector: only for counters given by name"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			c, err := Parse([]byte("services:\n- name: mailer\n  signals: " + tc.in + "\n"))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s := c.Services[0].Signals
			if got := s.RequestsQuery(); got != tc.requests {
				t.Errorf("requests query\n got %s\nwant %s", got, tc.requests)
			}
			if got := s.ErrorsQuery(); got != tc.errors {
				t.Errorf("errors query\n got %s\nwant %s", got, tc.errors)
			}
		})
	}
}
