package kubernetes_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/vigilhq/vigil/internal/peers"
)

// TestOtelcolLoadBalancingExample: the example's OpenTelemetry Collector
// configuration is valid for the collector release the scale-out tests run
// (built by `make peers` with the loadbalancing exporter), and routes
// traces and logs by trace ID to the overlay's headless Service.
func TestOtelcolLoadBalancingExample(t *testing.T) {
	bin := peers.GoBinary(t, "otelcol-loadbalancing")
	b, err := os.ReadFile(filepath.Join("examples", "otelcol-loadbalancing.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg string
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var cm corev1.ConfigMap
		if err := dec.Decode(&cm); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if cm.Kind == "ConfigMap" {
			cfg = cm.Data["config.yaml"]
		}
	}
	for _, want := range []string{"routing_key: traceID", "hostname: vigil-collector-headless.vigil.svc.cluster.local", `port: "4317"`, "exporters: [load_balancing]"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("the example's collector config lacks %q", want)
		}
	}
	if _, ok := render(t, "scaled").services["vigil-collector-headless"]; !ok {
		t.Errorf("the scaled overlay has no Service vigil-collector-headless for the example to resolve")
	}
	f := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(f, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "validate", "--config="+f)
	cmd.Env = append(os.Environ(), "VIGIL_AGENTS_TOKEN=example")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("otelcol validate: %v\n%s", err, out)
	}
}
