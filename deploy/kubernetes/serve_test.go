package kubernetes_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"

	"github.com/vigilhq/vigil/internal/peers"
	"github.com/vigilhq/vigil/query"
)

// localConfig turns a shipped vigil.yml into one that runs on this machine:
// each token file moves to a temporary file holding localToken of its name
// (listen addresses and storage.path are overridden by peers.StartVigil's
// flags) and remote_write, when present, goes to forwardURL.
func localConfig(t *testing.T, cfg vigilConfig, raw, forwardURL string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "vigil.yml")
	if err := os.WriteFile(f, []byte(localize(t, cfg, raw, forwardURL, localToken)), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// localize moves cfg's token files to temporary files holding value(file),
// and its remote_write urls to forwardURL unless that is empty.
func localize(t *testing.T, cfg vigilConfig, raw, forwardURL string, value func(file string) string) string {
	t.Helper()
	dir := t.TempDir()
	out := raw
	files := map[string]bool{}
	for _, tok := range cfg.Auth.Tokens {
		files[tok.TokenFile] = true
	}
	// ... and the Secret's files it sends as a client (credentials_file).
	for _, f := range secretFileRE.FindAllString(raw, -1) {
		files[f] = true
	}
	for f := range files {
		local := filepath.Join(dir, filepath.Base(f))
		if err := os.WriteFile(local, []byte(value(f)+"\n"), 0o400); err != nil {
			t.Fatal(err)
		}
		out = strings.ReplaceAll(out, f, local)
	}
	if forwardURL != "" {
		for _, rw := range cfg.RemoteWrite {
			out = strings.ReplaceAll(out, rw.URL.String(), forwardURL)
		}
	}
	return out
}

// secretFileRE matches the paths of the token Secret's files in a vigil.yml.
var secretFileRE = regexp.MustCompile(`/etc/vigil-secrets/[A-Za-z0-9._-]+`)

// localToken is the token localConfig writes for a shipped token file.
func localToken(file string) string { return "local-" + filepath.Base(file) }

// The shipped token files of the write and read scopes.
const (
	writeTokenFile = "/etc/vigil-secrets/agents-token"
	readTokenFile  = "/etc/vigil-secrets/grafana-token"
)

// withToken sends every request with the token of a shipped token file.
type withToken struct{ file string }

func (w withToken) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+localToken(w.file))
	return http.DefaultTransport.RoundTrip(r)
}

// pushSample remote-writes one float sample (1.0) to a Vigil, with the write token.
func pushSample(t *testing.T, base string, lbls map[string]string, ts time.Time, v float64) {
	t.Helper()
	s := prompb.TimeSeries{Samples: []prompb.Sample{{Value: v, Timestamp: ts.UnixMilli()}}}
	for _, n := range []string{"__name__", "job", "service"} {
		s.Labels = append(s.Labels, prompb.Label{Name: n, Value: lbls[n]})
	}
	raw, err := (&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{s}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, raw)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := (&http.Client{Transport: withToken{writeTokenFile}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("remote_write to %s: %s %s", base, resp.Status, body)
	}
}

// get GETs url with the read token (the probes need none and ignore it).
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Transport: withToken{readTokenFile}}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestShippedConfigsServe runs `vigil serve` on every vigil.yml the overlays
// ship and checks what the manifests rely on: the probe paths of the
// rendered pods answer 200, and /metrics exposes the counter the HPA's
// custom-metrics rule turns into vigil_ingest_samples_per_second.
func TestShippedConfigsServe(t *testing.T) {
	bin := peers.VigilBinary(t)
	forwarding := supportsForwarding(t, bin)
	seen := map[string]bool{}
	for _, ov := range overlays {
		r := render(t, ov.name)
		for _, w := range r.workloads() {
			c := w.template.Spec.Containers[0]
			cm, err := r.configMapOf(w.template.Spec, c)
			if err != nil {
				t.Fatal(err)
			}
			if seen[cm.Name] {
				continue
			}
			seen[cm.Name] = true
			t.Run(ov.name+"/"+w.name, func(t *testing.T) {
				cfg, err := parseConfig(cm)
				if err != nil {
					t.Fatal(err)
				}
				raw := cm.Data[filepath.Base(configPath)]
				if len(cfg.RemoteWrite) > 0 && !forwarding {
					t.Logf("this vigil binary predates forwarding: serving %s without its remote_write block", cm.Name)
					raw = withoutKey(t, raw, "remote_write")
					cfg.RemoteWrite = nil
				}
				// Forwarding goes to a throwaway receiver here; TestScaledForwardsToStore follows a sample end to end.
				v := peers.StartVigil(t, "", "--config.file="+localConfig(t, cfg, raw, "http://"+peers.FreeAddr(t)+"/api/v1/write"))
				for _, probe := range []string{c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path} {
					if code, body := get(t, v.URL()+probe); code != http.StatusOK {
						t.Errorf("probe %s: %d %s", probe, code, body)
					}
				}
				pushSample(t, v.URL(), map[string]string{"__name__": "k8s_manifest_probe", "job": "test", "service": "probe"}, time.Now(), 1)
				_, metrics := get(t, v.URL()+"/metrics")
				if !strings.Contains(metrics, "\nvigil_ingest_samples_total{") {
					t.Errorf("/metrics has no vigil_ingest_samples_total series for the HPA's custom-metrics rule")
				}
			})
		}
	}
}

// TestScaledForwardsToStore runs the scaled overlay's two configs as they
// are wired: a sample written to the collector is queryable on the store.
func TestScaledForwardsToStore(t *testing.T) {
	bin := peers.VigilBinary(t)
	if !supportsForwarding(t, bin) {
		t.Log("this vigil binary predates forwarding (top-level remote_write unknown): the collector -> store path cannot run yet")
		return
	}
	r := render(t, "scaled")
	configOf := func(kind, name string) (vigilConfig, string) {
		var tmpl = r.statefulSets[name].Spec.Template
		if kind == "Deployment" {
			tmpl = r.deployments[name].Spec.Template
		}
		cm, err := r.configMapOf(tmpl.Spec, tmpl.Spec.Containers[0])
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := parseConfig(cm)
		if err != nil {
			t.Fatal(err)
		}
		return cfg, cm.Data[filepath.Base(configPath)]
	}
	storeCfg, storeRaw := configOf("StatefulSet", "vigil")
	store := peers.StartVigil(t, "", "--config.file="+localConfig(t, storeCfg, storeRaw, ""))
	collCfg, collRaw := configOf("Deployment", "vigil-collector")
	coll := peers.StartVigil(t, "", "--config.file="+localConfig(t, collCfg, collRaw, store.URL()+"/api/v1/write"))

	now := time.Now()
	pushSample(t, coll.URL(), map[string]string{"__name__": "k8s_forwarded", "job": "shop", "service": "checkout"}, now, 42)

	client, err := query.NewClient(store.URL(), withToken{readTokenFile})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := client.Instant(context.Background(), `k8s_forwarded{service="checkout"}`, now, 10*time.Second)
		if err == nil {
			if vec, ok := res.Value.(model.Vector); ok && len(vec) == 1 && vec[0].Value == 42 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sample written to the collector never reached the store (last: %v, %v)\ncollector logs:\n%s", res.Value, err, tailString(coll.Logs(), 3000))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func tailString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("...%s", s[len(s)-n:])
}
