package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// datasourceVariable lets the viewer pick any Prometheus datasource; the
// default is the one provisioning creates (DatasourceName), or Grafana's
// default Prometheus datasource when that name does not exist.
func datasourceVariable(name, uid string) *dashboard.DatasourceVariableBuilder {
	return dashboard.NewDatasourceVariableBuilder(datasourceVar).
		Label("Data source").
		Type(datasourceType).
		Current(option(name, uid))
}

// queryVariable is a variable filled from label_values(...).
func queryVariable(name, label, query string) *dashboard.QueryVariableBuilder {
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Datasource(datasource()).
		Query(dashboard.StringOrMap{String: ptr(query)}).
		Definition(query).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc)
}

// multiAll makes a query variable multi-valued with an "All" entry that
// matches everything (.*), which is what regex matchers =~"$var" need.
func multiAll(v *dashboard.QueryVariableBuilder) *dashboard.QueryVariableBuilder {
	return v.Multi(true).IncludeAll(true).AllValue(".*").Current(dashboard.VariableOption{
		Selected: ptr(true),
		Text:     dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
		Value:    dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}},
	})
}

func option(text, value string) dashboard.VariableOption {
	return dashboard.VariableOption{
		Selected: ptr(true),
		Text:     dashboard.StringOrArrayOfString{String: ptr(text)},
		Value:    dashboard.StringOrArrayOfString{String: ptr(value)},
	}
}
