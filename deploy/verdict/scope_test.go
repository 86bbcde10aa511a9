package verdict

import "testing"

func TestScope(t *testing.T) {
	sl := SeriesLabels{"log_records_total": {"service", "version", "severity"}}
	for _, tc := range []struct {
		name, catalog, expr, want string
	}{
		{"no catalog matchers", "", `log_records_total{service="a",cluster="eu-1"}`, `log_records_total{service="a",cluster="eu-1"}`},
		{"dropped from a listed metric only", `cluster="eu-1"`,
			`sum(log_records_total{service="a",cluster="eu-1"}) / sum(rate(calls{service="a",cluster="eu-1"}[1m]))`,
			`sum(log_records_total{service="a"}) / sum(rate(calls{cluster="eu-1",service="a"}[1m]))`},
		{"regex and negative matchers", `cluster=~"eu-.*",zone!="b"`,
			`log_records_total{service="a",cluster=~"eu-.*",zone!="b"} offset 1m`, `log_records_total{service="a"} offset 1m`},
		{"a matcher the user wrote stays", `cluster="eu-1"`, `log_records_total{cluster="us-1"}`, `log_records_total{cluster="us-1"}`},
		{"carried labels stay", `version="v2"`, `log_records_total{version="v2"}`, `log_records_total{version="v2"}`},
		{"__name__ form", `cluster="eu-1"`, `{__name__="log_records_total",cluster="eu-1"}`, `{__name__="log_records_total"}`},
		{"unparseable stays as it is", `cluster="eu-1"`, `log_records_total{cluster="eu-1"`, `log_records_total{cluster="eu-1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sl.scope(tc.expr, catalogMatchers(tc.catalog)); got != tc.want {
				t.Errorf("scope(%s) =\n  %s\nwant\n  %s", tc.expr, got, tc.want)
			}
		})
	}
}
