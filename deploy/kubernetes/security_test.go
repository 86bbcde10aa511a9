package kubernetes_test

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// scopes are the scopes the shipped configs must give a token each.
var scopes = []string{"write", "read", "deploy", "admin"}

// checkTokens: the config has auth.tokens, one per scope at least; every
// token file (and remote_write's credentials_file) comes from a key of a
// rendered Secret, mounted read-only with mode 0400 in the server and in the
// init container that checks the config (check config reads the files).
func checkTokens(r *rendered, w workload, cmName string, cfg vigilConfig) []error {
	var errs []error
	covered := map[string]bool{}
	var files []string
	for _, t := range cfg.Auth.Tokens {
		for _, s := range t.Scopes {
			covered[string(s)] = true
		}
		files = append(files, t.TokenFile)
	}
	for _, s := range scopes {
		if !covered[s] {
			errs = append(errs, fmt.Errorf("ConfigMap %s: auth.tokens has no token with scope %s", cmName, s))
		}
	}
	for _, rw := range cfg.RemoteWrite {
		if a := rw.HTTPClientConfig.Authorization; a != nil && a.CredentialsFile != "" {
			f := a.CredentialsFile
			files = append(files, f)
		}
	}
	spec := w.template.Spec
	containers := append([]corev1.Container{spec.Containers[0]}, spec.InitContainers...)
	for _, f := range files {
		for _, c := range containers {
			m, ok := mountOf(c, path.Dir(f))
			if !ok {
				errs = append(errs, fmt.Errorf("%s %s: container %s has nothing mounted at %s for %s", w.kind, w.name, c.Name, path.Dir(f), f))
				continue
			}
			v, _ := volume(spec, m.Name)
			if v.Secret == nil {
				errs = append(errs, fmt.Errorf("%s %s: the token at %s is not from a Secret", w.kind, w.name, f))
				continue
			}
			s, ok := r.secrets[v.Secret.SecretName]
			if !ok {
				errs = append(errs, fmt.Errorf("%s %s: Secret %s is not rendered", w.kind, w.name, v.Secret.SecretName))
				continue
			}
			key := path.Base(f)
			if len(s.Data[key]) == 0 && s.StringData[key] == "" {
				errs = append(errs, fmt.Errorf("Secret %s has no key %s (for %s)", s.Name, key, f))
			}
			if !m.ReadOnly || v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o077 != 0 {
				errs = append(errs, fmt.Errorf("%s %s: the token Secret must be mounted read-only with mode 0400 (owner only)", w.kind, w.name))
			}
		}
	}
	return errs
}

// checkNetworkPolicy: every workload's pods are selected by a NetworkPolicy
// that restricts ingress (no rule open to every source) and lets in the
// ports of the Services that select them.
func checkNetworkPolicy(r *rendered) []error {
	var errs []error
	for _, w := range r.workloads() {
		podLabels := labels.Set(w.template.Labels)
		var policies []string
		allowed := map[int32]bool{}
		for _, np := range r.networkPolicies {
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err != nil {
				errs = append(errs, fmt.Errorf("NetworkPolicy %s: %v", np.Name, err))
				continue
			}
			if !sel.Matches(podLabels) || !slices.Contains(np.Spec.PolicyTypes, "Ingress") {
				continue
			}
			policies = append(policies, np.Name)
			for i, rule := range np.Spec.Ingress {
				if len(rule.From) == 0 {
					errs = append(errs, fmt.Errorf("NetworkPolicy %s: ingress rule %d lets in every source", np.Name, i))
				}
				for _, p := range rule.Ports {
					if p.Port != nil {
						allowed[p.Port.IntVal] = true
					}
				}
			}
		}
		if len(policies) == 0 {
			errs = append(errs, fmt.Errorf("%s %s: no NetworkPolicy restricts ingress to its pods", w.kind, w.name))
			continue
		}
		for _, svc := range r.services {
			if !selects(svc.Spec.Selector, w.template.Labels) {
				continue
			}
			for _, sp := range svc.Spec.Ports {
				port, err := containerPort(w.template.Spec.Containers[0], sp.TargetPort)
				if err != nil {
					continue
				}
				if !allowed[port] {
					errs = append(errs, fmt.Errorf("%s %s: port %d of Service %s is not let in by NetworkPolicy %v", w.kind, w.name, port, svc.Name, policies))
				}
			}
		}
	}
	return errs
}

// secretValue is the rendered value of the Secret key a token file is
// mounted from (the Secret is vigil-tokens in every overlay).
func secretValue(t *testing.T, r *rendered, file string) string {
	t.Helper()
	for name, s := range r.secrets {
		if v, ok := s.Data[path.Base(file)]; ok && strings.HasPrefix(name, "vigil-tokens") {
			return string(v)
		}
	}
	t.Fatalf("no rendered Secret vigil-tokens has the key %s", path.Base(file))
	return ""
}
