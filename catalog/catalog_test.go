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
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to mention %q", err, tc.want)
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
