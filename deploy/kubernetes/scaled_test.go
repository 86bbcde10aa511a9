package kubernetes_test

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/vigilhq/vigil/internal/config"
)

// loadShipped loads a rendered vigil.yml with Vigil's own config loader.
func loadShipped(t *testing.T, raw string) config.Config {
	t.Helper()
	f := filepath.Join(t.TempDir(), "vigil.yml")
	if err := os.WriteFile(f, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestScaledReplicasNamedAndTrusted: in the scaled overlay each collector
// replica is named after its pod (POD_NAME from the downward API, which
// collector.replica defaults to), forwards samples and evidence to the store
// with a token the Secret holds, and the store takes derived series only
// from that token; the store itself has no replica name.
func TestScaledReplicasNamedAndTrusted(t *testing.T) {
	r := render(t, "scaled")
	d := r.deployments["vigil-collector"]
	c := d.Spec.Template.Spec.Containers[0]
	named := slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == config.ReplicaEnv && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
	})
	if !named {
		t.Errorf("the collectors do not get %s from the pod's name: %+v", config.ReplicaEnv, c.Env)
	}
	for _, e := range r.statefulSets["vigil"].Spec.Template.Spec.Containers[0].Env {
		if e.Name == config.ReplicaEnv {
			t.Errorf("the store sets %s: its own derived series would carry a replica name", e.Name)
		}
	}

	cm, err := r.configMapOf(d.Spec.Template.Spec, c)
	if err != nil {
		t.Fatal(err)
	}
	coll := loadShipped(t, cm.Data[path.Base(configPath)])
	if len(coll.RemoteWrite) == 0 || coll.RemoteWrite[0].HTTPClientConfig.Authorization == nil {
		t.Fatal("the collectors forward without a token")
	}
	tokenFile := coll.RemoteWrite[0].HTTPClientConfig.Authorization.CredentialsFile
	ev := coll.Collector.EvidenceForward
	if ev.URL == "" || ev.HTTPClientConfig.Authorization == nil || ev.HTTPClientConfig.Authorization.CredentialsFile != tokenFile {
		t.Errorf("evidence forwarding %q with %+v, want the store's /api/v1/evidence with %s", ev.URL, ev.HTTPClientConfig.Authorization, tokenFile)
	}
	if !strings.HasSuffix(ev.URL, "/api/v1/evidence") || !strings.HasPrefix(ev.URL, strings.TrimSuffix(coll.RemoteWrite[0].URL.String(), "/api/v1/write")) {
		t.Errorf("evidence goes to %s, samples to %s: want the same store", ev.URL, coll.RemoteWrite[0].URL)
	}

	sts := r.statefulSets["vigil"]
	scm, err := r.configMapOf(sts.Spec.Template.Spec, sts.Spec.Template.Spec.Containers[0])
	if err != nil {
		t.Fatal(err)
	}
	store := loadShipped(t, scm.Data[path.Base(configPath)])
	var name string
	for _, tok := range store.Auth.Tokens {
		if tok.TokenFile == tokenFile {
			name = tok.Name
		}
	}
	if name == "" || !slices.Equal(store.Ingest.AcceptDerivedSeriesFrom, []string{name}) {
		t.Errorf("store: the collectors' token %s is %q; accept_derived_series_from %v, want exactly it", tokenFile, name, store.Ingest.AcceptDerivedSeriesFrom)
	}
	key := path.Base(tokenFile)
	found := false
	for _, s := range r.secrets {
		if _, ok := s.Data[key]; ok {
			found = true
		}
		if _, ok := s.StringData[key]; ok {
			found = true
		}
	}
	if !found {
		t.Errorf("no Secret holds %s", key)
	}
	if _, ok := r.services["vigil-collector-headless"]; !ok {
		t.Errorf("no headless Service for trace-aware routing to the replicas")
	}
}
