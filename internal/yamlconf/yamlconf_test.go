package yamlconf

import (
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/units"
	"github.com/prometheus/common/model"
)

type storageSection struct {
	Path      string           `yaml:"path"`
	Retention model.Duration   `yaml:"retention"`
	MaxBytes  units.Base2Bytes `yaml:"max_bytes"`
}

type target struct {
	Storage storageSection `yaml:"storage"`
	Name    string         `yaml:"name"`
	Workers int            `yaml:"workers"`
	Targets []struct {
		URL string `yaml:"url"`
	} `yaml:"targets"`
	Hidden string `yaml:"-"`
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		wantErr string
		check   func(t *testing.T, got target)
	}{
		{name: "empty keeps defaults", in: "", check: func(t *testing.T, got target) {
			if got.Storage.Path != "data" || got.Workers != 4 {
				t.Errorf("defaults changed: %+v", got)
			}
		}},
		{name: "values", in: "storage:\n  retention: 30d\n  max_bytes: 512MiB\nworkers: 8\ntargets:\n  - url: http://a\n", check: func(t *testing.T, got target) {
			if got.Storage.Retention != model.Duration(30*24*time.Hour) || got.Storage.MaxBytes != 512*units.MiB || got.Workers != 8 || got.Storage.Path != "data" {
				t.Errorf("got %+v", got)
			}
			if len(got.Targets) != 1 || got.Targets[0].URL != "http://a" {
				t.Errorf("targets: %+v", got.Targets)
			}
		}},
		{name: "unknown top-level key", in: "workers: 1\nstorrage:\n  path: x\n", wantErr: `line 2: unknown key "storrage" in the top level (known keys: storage, name, workers, targets)`},
		{name: "unknown nested key", in: "storage:\n  retension: 1d\n", wantErr: `line 2: unknown key "retension" in storage (known keys: path, retention, max_bytes)`},
		{name: "unknown key in list item", in: "targets:\n  - url: a\n  - uri: b\n", wantErr: `line 3: unknown key "uri" in targets[1]`},
		{name: "bad duration", in: "storage:\n  retention: 15x\n", wantErr: `line 2: storage.retention: unknown unit "x" in duration "15x"`},
		{name: "bad int", in: "workers: many\n", wantErr: "line 1: workers: cannot unmarshal !!str `many` into int"},
		{name: "duplicate key", in: "workers: 1\nworkers: 2\n", wantErr: `line 2: key "workers" in the top level is already set on line 1`},
		{name: "scalar for section", in: "storage: fast\n", wantErr: `line 1: storage: expected a mapping of keys to values, got "fast"`},
		{name: "ignored field is unknown", in: "hidden: x\n", wantErr: `unknown key "hidden"`},
		{name: "syntax error", in: "storage: [\n", wantErr: "yaml:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := target{Storage: storageSection{Path: "data"}, Workers: 4}
			err := Decode([]byte(tc.in), &got)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, got)
		})
	}
}
