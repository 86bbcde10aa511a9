package dashboards

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/internal/grafanatest"
)

func TestProvisioningGolden(t *testing.T) {
	dsYAML, err := DatasourceYAML(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	prov, err := ProviderYAML("/var/lib/grafana/dashboards/vigil")
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][]byte{"datasource.yml": dsYAML, "provider.yml": prov} {
		path := filepath.Join("testdata", "golden", name)
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(want), string(got)); diff != "" {
			t.Errorf("%s (-golden +generated):\n%s", name, diff)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"default", func(*Config) {}, ""},
		{"no name", func(c *Config) { c.DatasourceName = "" }, "datasource name is required"},
		{"bad uid", func(c *Config) { c.DatasourceUID = "has space" }, `datasource uid "has space"`},
		{"long uid", func(c *Config) { c.DatasourceUID = strings.Repeat("u", 41) }, "1-40 letters"},
		{"bad url", func(c *Config) { c.VigilURL = "localhost:9400" }, "must start with http://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestWriteAll checks the layout Grafana's provisioning reads, that the
// provider points at the absolute dashboards folder, and that a second run
// with a smaller catalog removes the dashboards that went away.
func TestWriteAll(t *testing.T) {
	cat, err := catalog.Load("testdata/catalog.yml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	written, err := WriteAll(cat, dir, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"dashboards/Vigil/vigil-deployments.json dashboard",
		"dashboards/Vigil/vigil-self.json dashboard",
		"dashboards/production/vigil-svc-cart-production.json dashboard",
		"dashboards/production/vigil-svc-checkout-production.json dashboard",
		"dashboards/production/vigil-svc-search-production.json dashboard",
		"dashboards/staging/vigil-svc-cart-staging.json dashboard",
		"provisioning/dashboards/vigil.yml dashboard provider",
		"provisioning/datasources/vigil.yml datasource",
	}
	var got []string
	for _, w := range written {
		got = append(got, w.Path+" "+w.Kind)
		fi, err := os.Stat(filepath.Join(dir, w.Path))
		if err != nil || fi.Size() != int64(w.Bytes) || w.Bytes == 0 {
			t.Errorf("%s: %v, size %v, reported %d bytes", w.Path, err, fi, w.Bytes)
		}
	}
	sort.Strings(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("written files (-want +got):\n%s", diff)
	}
	// Every directory Grafana reads under paths.provisioning exists, so
	// that it logs no error at start.
	for _, d := range grafanatest.ProvisioningDirs {
		if fi, err := os.Stat(filepath.Join(dir, ProvisioningDir, d)); err != nil || !fi.IsDir() {
			t.Errorf("provisioning/%s: %v", d, err)
		}
	}

	var prov struct {
		Providers []struct {
			Options struct {
				Path                      string `yaml:"path"`
				FoldersFromFilesStructure bool   `yaml:"foldersFromFilesStructure"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "provisioning/dashboards/vigil.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &prov); err != nil {
		t.Fatal(err)
	}
	if len(prov.Providers) != 1 || prov.Providers[0].Options.Path != filepath.Join(dir, "dashboards") || !prov.Providers[0].Options.FoldersFromFilesStructure {
		t.Fatalf("provider: %+v", prov)
	}

	// A user's own dashboard in the same folder is left alone.
	own := filepath.Join(dir, "dashboards/production/mine.json")
	if err := os.WriteFile(own, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	small := *cat
	small.Services = []catalog.Service{cat.Services[0]} // cart production
	if _, err := WriteAll(&small, dir, DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"production/vigil-svc-checkout-production.json", "staging/vigil-svc-cart-staging.json"} {
		if _, err := os.Stat(filepath.Join(dir, "dashboards", gone)); !os.IsNotExist(err) {
			t.Errorf("%s: still there after it left the catalog (%v)", gone, err)
		}
	}
	for _, kept := range []string{"production/vigil-svc-cart-production.json", "production/mine.json"} {
		if _, err := os.Stat(filepath.Join(dir, "dashboards", kept)); err != nil {
			t.Error(err)
		}
	}
}

func TestFolderDir(t *testing.T) {
	for in, want := range map[string]string{"production": "production", "eu/west": "eu_west", "": "_", "..": "_", "Vigil": "Vigil"} {
		if got := FolderDir(in); got != want {
			t.Errorf("FolderDir(%q) = %q, want %q", in, got, want)
		}
	}
}
