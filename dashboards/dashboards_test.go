package dashboards

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/vigilhq/vigil/catalog"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func generate(t *testing.T) []Dashboard {
	t.Helper()
	cat, err := catalog.Load("testdata/catalog.yml")
	if err != nil {
		t.Fatal(err)
	}
	ds, err := Generate(cat, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func TestGolden(t *testing.T) {
	ds := generate(t)
	want := []string{"vigil-deployments", "vigil-self", "vigil-svc-cart-production", "vigil-svc-cart-staging", "vigil-svc-checkout-production", "vigil-svc-search-production"}
	var got []string
	for _, d := range ds {
		got = append(got, d.UID())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("dashboard uids (-want +got):\n%s", diff)
	}
	for _, d := range ds {
		t.Run(d.UID(), func(t *testing.T) {
			b, err := d.JSON()
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "golden", d.UID()+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, b, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			golden, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./dashboards -run TestGolden -update)", err)
			}
			if diff := cmp.Diff(string(golden), string(b)); diff != "" {
				t.Errorf("%s differs from the golden file (-golden +generated); rerun with -update if intended:\n%s", path, diff)
			}
		})
	}
}

// TestRoundTrip: every dashboard decodes strictly into the SDK's dashboard
// type (unknown or missing fields fail) and encodes back to the same JSON,
// and declares the schema version the SDK targets.
func TestRoundTrip(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	sdkSchema := dashboard.NewDashboard().SchemaVersion
	for _, d := range generate(t) {
		t.Run(d.UID(), func(t *testing.T) {
			b, err := d.JSON()
			if err != nil {
				t.Fatal(err)
			}
			back, err := decodeStrict(b)
			if err != nil {
				t.Fatalf("strict decode: %v", err)
			}
			if back.SchemaVersion != sdkSchema {
				t.Errorf("schemaVersion = %d, want %d (the SDK's)", back.SchemaVersion, sdkSchema)
			}
			// Compared as JSON: the free-form parts (transformation options,
			// override values) decode as float64/[]any, not the Go types
			// the generator used, so Dashboard.Equals cannot be used.
			again, err := json.Marshal(back)
			if err != nil {
				t.Fatal(err)
			}
			var x, y any
			if err := json.Unmarshal(b, &x); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(again, &y); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(x, y); diff != "" {
				t.Errorf("JSON changed on a decode/encode round trip (-generated +round-tripped):\n%s", diff)
			}
		})
	}
}

// strict works around the SDK (v0.0.22) returning a nil cog.BuildErrors
// wrapped in a non-nil error when strict decoding found nothing wrong.
func strict(err error) error {
	var be cog.BuildErrors
	if errors.As(err, &be) && len(be) == 0 {
		return nil
	}
	return err
}

// decodeStrict checks a dashboard with the SDK's strict decoder (unknown
// fields, wrong types, missing required fields all fail) and returns it
// decoded by the SDK's regular decoder. Both are needed with SDK v0.0.22:
// its strict decoders return a nil cog.BuildErrors as a non-nil error when
// nothing is wrong, so real problems are reported but PanelOrRowPanel,
// panel options and targets that decoded cleanly are dropped from the
// strict result.
func decodeStrict(b []byte) (dashboard.Dashboard, error) {
	var checked dashboard.Dashboard
	if err := strict(checked.UnmarshalJSONStrict(b)); err != nil {
		return checked, err
	}
	var d dashboard.Dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return d, err
	}
	return d, nil
}

// expression is one PromQL expression found in a dashboard.
type expression struct {
	where string
	expr  string
}

// expressions walks the dashboard JSON: panel targets, query variables
// (label_values(selector, label) yields the selector) and annotations.
func expressions(t *testing.T, d Dashboard) []expression {
	t.Helper()
	b, err := d.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Annotations struct {
			List []struct {
				Name string `json:"name"`
				Expr string `json:"expr"`
			} `json:"list"`
		} `json:"annotations"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var out []expression
	for _, p := range m.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out = append(out, expression{where: "panel " + p.Title + " " + tg.RefID, expr: tg.Expr})
		}
	}
	for _, v := range m.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		sel := labelValuesRE.FindStringSubmatch(q)
		if sel == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, q)
			continue
		}
		out = append(out, expression{where: "variable " + v.Name, expr: sel[1]})
	}
	for _, a := range m.Annotations.List {
		if a.Expr != "" {
			out = append(out, expression{where: "annotation " + a.Name, expr: a.Expr})
		}
	}
	return out
}

var labelValuesRE = regexp.MustCompile(`^label_values\((.+), *[a-zA-Z_][a-zA-Z0-9_]*\)$`)

// builtinVars are Grafana's built-in variables and example values.
var builtinVars = map[string]string{"__rate_interval": "1m", "__interval": "30s", "__range": "1h", "__range_s": "3600"}

// exampleValues are values for the dashboards' own variables.
var exampleValues = map[string]string{"service": "checkout", "environment": "production", "version": "v1|v2", "instance": ".*"}

var varRE = regexp.MustCompile(`\$\{?([a-zA-Z_][a-zA-Z0-9_]*)\}?`)

// substitute replaces Grafana's built-in variables and those the dashboard
// defines; it reports the variables it does not know.
func substitute(expr string, defined map[string]bool) (string, []string) {
	var unknown []string
	out := varRE.ReplaceAllStringFunc(expr, func(m string) string {
		name := varRE.FindStringSubmatch(m)[1]
		v, ok := builtinVars[name]
		if !ok && defined[name] {
			v, ok = exampleValues[name]
		}
		if !ok {
			unknown = append(unknown, name)
			return m
		}
		return v
	})
	return out, unknown
}

func TestExpressionsParse(t *testing.T) {
	for _, d := range generate(t) {
		t.Run(d.UID(), func(t *testing.T) {
			defined := map[string]bool{}
			for _, v := range d.Model.Templating.List {
				defined[v.Name] = true
			}
			exprs := expressions(t, d)
			if len(exprs) < 5 {
				t.Fatalf("only %d expressions found", len(exprs))
			}
			for _, e := range exprs {
				q, unknown := substitute(e.expr, defined)
				if len(unknown) > 0 {
					t.Errorf("%s: unknown variables %v in %s", e.where, unknown, e.expr)
				}
				if _, err := parser.NewParser(parser.Options{}).ParseExpr(q); err != nil {
					t.Errorf("%s: %v\n  %s", e.where, err, q)
				}
			}
		})
	}
}

// TestDatasourceIsVariable: nothing names a datasource uid except the
// datasource variable's default.
func TestDatasourceIsVariable(t *testing.T) {
	uidRE := regexp.MustCompile(`"uid": "([^"]*)"`)
	for _, d := range generate(t) {
		b, _ := d.JSON()
		n := 0
		for _, m := range uidRE.FindAllStringSubmatch(string(b), -1) {
			if m[1] == d.UID() {
				continue // the dashboard's own uid
			}
			n++
			if m[1] != "${datasource}" {
				t.Errorf("%s: hard-coded datasource uid %q", d.UID(), m[1])
			}
		}
		if n == 0 {
			t.Errorf("%s: no datasource references", d.UID())
		}
		if !bytes.Contains(b, []byte(`"type": "datasource"`)) {
			t.Errorf("%s: no datasource variable", d.UID())
		}
	}
}

// TestServiceDashboardFollowsCatalog checks what differs between services:
// thresholds from SLOs, SLO panels only with SLOs, matchers and operations.
func TestServiceDashboardFollowsCatalog(t *testing.T) {
	ds := map[string]string{}
	for _, d := range generate(t) {
		b, _ := d.JSON()
		ds[d.UID()] = string(b)
	}
	for _, tc := range []struct {
		uid         string
		contains    []string
		notContains []string
	}{
		{
			uid: "vigil-svc-checkout-production",
			contains: []string{
				`"title": "SLOs"`, "slo:current_burn_rate:ratio", `"value": 0.001`, `"value": 0.3`,
				`namespace=\"shop\"`, "https://runbooks.example.com/checkout", "Owner: team-payments",
			},
		},
		{
			uid:         "vigil-svc-cart-production",
			contains:    []string{`cluster=\"eu-1\"`, `"value": 0.005`, "28d"},
			notContains: []string{"slo:period_error_budget_remaining:ratio{service=\"$service\",environment=\"$environment\",slo=\"latency\"}"},
		},
		{
			uid:         "vigil-svc-cart-staging",
			contains:    []string{`"text": "staging"`},
			notContains: []string{`"title": "SLOs"`, `cluster=\"eu-1\"`},
		},
		{
			uid:         "vigil-svc-search-production",
			contains:    []string{`span_name=~\"GET /search|GET /suggest\"`, `namespace=\"catalog\"`, `"value": 0.05`},
			notContains: []string{`"title": "SLOs"`},
		},
	} {
		t.Run(tc.uid, func(t *testing.T) {
			j, ok := ds[tc.uid]
			if !ok {
				t.Fatalf("no dashboard %s", tc.uid)
			}
			for _, s := range tc.contains {
				if !strings.Contains(j, s) {
					t.Errorf("missing %s", s)
				}
			}
			for _, s := range tc.notContains {
				if strings.Contains(j, s) {
					t.Errorf("unexpected %s", s)
				}
			}
		})
	}
}

func TestServiceUID(t *testing.T) {
	for _, tc := range []struct{ service, env, want string }{
		{"checkout", "production", "vigil-svc-checkout-production"},
		{"a.b", "", "vigil-svc-a_b"},
		{strings.Repeat("x", 50), "production", "vigil-svc-xxxxxxxxxxxxxxxxxxx-"},
	} {
		got := ServiceUID(tc.service, tc.env)
		if !strings.HasPrefix(got, tc.want) || len(got) > 40 || !uidRE.MatchString(got) {
			t.Errorf("ServiceUID(%q, %q) = %q, want prefix %q, at most 40 characters", tc.service, tc.env, got, tc.want)
		}
	}
	if ServiceUID(strings.Repeat("x", 50), "a") == ServiceUID(strings.Repeat("x", 50), "b") {
		t.Error("long uids collide")
	}
}

// TestQueriesMatchJSON: Queries finds the same expressions as a walk of
// the JSON Grafana receives.
func TestQueriesMatchJSON(t *testing.T) {
	for _, d := range generate(t) {
		var fromJSON, fromModel []string
		for _, e := range expressions(t, d) {
			fromJSON = append(fromJSON, e.expr)
		}
		for _, q := range Queries(d) {
			e := q.Expr
			if q.Kind == "variable" {
				e = labelValuesRE.FindStringSubmatch(e)[1]
			}
			fromModel = append(fromModel, e)
		}
		if diff := cmp.Diff(fromJSON, fromModel); diff != "" {
			t.Errorf("%s (-json +Queries):\n%s", d.UID(), diff)
		}
	}
}

// TestLayout: panel ids are unique, every panel fits Grafana's 24-column
// grid without overlapping another, and every panel has a title.
func TestLayout(t *testing.T) {
	for _, d := range generate(t) {
		t.Run(d.UID(), func(t *testing.T) {
			ids := map[uint32]bool{}
			type box struct{ x, y, w, h uint32 }
			var boxes []box
			var titles []string
			for _, p := range d.Model.Panels {
				var id uint32
				var pos *dashboard.GridPos
				var title string
				switch {
				case p.Panel != nil:
					id, pos = *p.Panel.Id, p.Panel.GridPos
					if p.Panel.Title != nil {
						title = *p.Panel.Title
					}
				case p.RowPanel != nil:
					id, pos = p.RowPanel.Id, p.RowPanel.GridPos
					if p.RowPanel.Title != nil {
						title = *p.RowPanel.Title
					}
				}
				if ids[id] {
					t.Errorf("panel id %d used twice", id)
				}
				ids[id] = true
				if title == "" {
					t.Errorf("panel %d has no title", id)
				}
				if pos == nil || pos.W == 0 || pos.H == 0 || pos.X+pos.W > 24 {
					t.Errorf("panel %q: bad grid position %+v", title, pos)
					continue
				}
				b := box{pos.X, pos.Y, pos.W, pos.H}
				for i, o := range boxes {
					if b.x < o.x+o.w && o.x < b.x+b.w && b.y < o.y+o.h && o.y < b.y+b.h {
						t.Errorf("panel %q overlaps %q", title, titles[i])
					}
				}
				boxes, titles = append(boxes, b), append(titles, title)
			}
		})
	}
}

// panelJSON is the part of a panel the presentation tests read.
type panelJSON struct {
	Type        string          `json:"type"`
	Title       string          `json:"title"`
	GridPos     struct{ W int } `json:"gridPos"`
	FieldConfig struct {
		Defaults struct {
			NoValue    *string `json:"noValue"`
			Thresholds *struct {
				Steps []struct {
					Color string `json:"color"`
				} `json:"steps"`
			} `json:"thresholds"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Options struct {
		Legend *struct {
			DisplayMode string   `json:"displayMode"`
			Placement   string   `json:"placement"`
			Calcs       []string `json:"calcs"`
		} `json:"legend"`
	} `json:"options"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func panels(t *testing.T, d Dashboard) []panelJSON {
	t.Helper()
	b, err := d.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Panels []panelJSON `json:"panels"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m.Panels
}

// TestPresentation checks what Grafana would otherwise show wrongly: a stat
// without thresholds turns red from 80 (Grafana's default thresholds); a
// table's panel-wide noValue fills every empty cell; a table legend at the
// bottom of a panel scrolls from three series.
func TestPresentation(t *testing.T) {
	for _, d := range generate(t) {
		t.Run(d.UID(), func(t *testing.T) {
			for _, p := range panels(t, d) {
				switch p.Type {
				case "stat":
					if th := p.FieldConfig.Defaults.Thresholds; th == nil || len(th.Steps) == 0 {
						t.Errorf("stat %q has no thresholds: Grafana's default turns it red from 80", p.Title)
					}
				case "table":
					if p.FieldConfig.Defaults.NoValue != nil {
						t.Errorf("table %q sets noValue %q for every empty cell", p.Title, *p.FieldConfig.Defaults.NoValue)
					}
				case "timeseries":
					l := p.Options.Legend
					switch {
					case l == nil:
						t.Errorf("time series %q has no legend", p.Title)
					case l.DisplayMode == "table" && l.Placement != "right":
						t.Errorf("time series %q: a table legend at the %s scrolls from three series", p.Title, l.Placement)
					case l.DisplayMode == "table" && p.GridPos.W < 12:
						t.Errorf("time series %q: a table legend on the right of a %d-column panel leaves no room for the graph", p.Title, p.GridPos.W)
					case l.DisplayMode == "list" && len(l.Calcs) > 0:
						t.Errorf("time series %q: calculations %v in a list legend", p.Title, l.Calcs)
					}
				}
			}
			// Annotations place markers by value: a shaded region for each
			// firing alert would cover every chart.
			for _, a := range d.Model.Annotations.List {
				if a.Expr != nil && (a.UseValueForTime == nil || !*a.UseValueForTime) {
					t.Errorf("annotation %q shades regions", a.Name)
				}
			}
		})
	}
}

// TestLogQueriesFollowLogLabels: a catalog matcher on a label log metrics
// do not carry is left out of the log panels (which it would leave empty)
// and kept everywhere else; with that label as a log dimension it is kept.
func TestLogQueriesFollowLogLabels(t *testing.T) {
	cat, err := catalog.Load("testdata/catalog.yml")
	if err != nil {
		t.Fatal(err)
	}
	cart, _ := cat.Service("cart", "production")
	for _, tc := range []struct {
		name       string
		dims       []string
		logCluster bool
	}{
		{"no log dimensions", nil, false},
		{"cluster is a log dimension", []string{"cluster"}, true},
		{"an attribute named otherwise", []string{"k8s.cluster.name"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.LogDimensions = tc.dims
			d, err := Service(cat, cart, cfg)
			if err != nil {
				t.Fatal(err)
			}
			logs, spans := 0, 0
			for _, q := range Queries(d) {
				hasCluster := strings.Contains(q.Expr, `cluster="eu-1"`)
				switch {
				case strings.Contains(q.Expr, "log_records_total"):
					logs++
					if hasCluster != tc.logCluster {
						t.Errorf("%s %s: cluster matcher %v, want %v\n  %s", q.Title, q.RefID, hasCluster, tc.logCluster, q.Expr)
					}
				case strings.Contains(q.Expr, "traces_span_metrics_"):
					spans++
					if !hasCluster && q.Kind == "panel" {
						t.Errorf("%s %s: span query without the cluster matcher\n  %s", q.Title, q.RefID, q.Expr)
					}
				}
			}
			if logs < 2 || spans < 5 {
				t.Fatalf("%d log and %d span queries", logs, spans)
			}
		})
	}
}
