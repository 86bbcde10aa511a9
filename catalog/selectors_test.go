package catalog

import (
	"context"
	"strings"
	"testing"
)

// seriesLabels answers the selector checks' two queries from a list of the
// label sets span metrics carry (the real queries run in cmd/vigil's
// TestCatalogRulesAlertVerdictChain).
type seriesLabels struct {
	series []map[string]string
	asked  []string
}

func (s *seriesLabels) LabelSets(_ context.Context, expr string) ([]map[string]string, error) {
	s.asked = append(s.asked, expr)
	if strings.HasPrefix(expr, "count(") {
		// The full selector: matches when a series has every label it names.
		for _, ls := range s.series {
			if strings.Contains(expr, `namespace="`+ls["namespace"]+`"`) && strings.Contains(expr, `environment="`+ls["environment"]+`"`) {
				return []map[string]string{{}}, nil
			}
		}
		return nil, nil
	}
	var out []map[string]string
	for _, ls := range s.series {
		if strings.Contains(expr, `service="`+ls["service"]+`"`) {
			out = append(out, map[string]string{"namespace": ls["namespace"], "environment": ls["environment"]})
		}
	}
	return out, nil
}

func TestCheckSelector(t *testing.T) {
	svc := Service{Name: "orders", Namespace: "warehouse", Environment: "production"}
	for _, tc := range []struct {
		name   string
		series []map[string]string
		want   string
	}{
		{"matches", []map[string]string{{"service": "orders", "namespace": "warehouse", "environment": "production"}}, ""},
		{"sends nothing", nil, ""},
		{"another namespace", []map[string]string{{"service": "orders", "namespace": "shop", "environment": "production"}},
			`catalog service orders (production): its selector {service="orders",namespace="warehouse",environment="production"} matches none of its span metrics, which carry {environment="production", namespace="shop"}`},
		{"no namespace at all", []map[string]string{{"service": "orders", "environment": "prod"}}, `which carry {environment="prod", namespace=""}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := &seriesLabels{series: tc.series}
			m, err := CheckSelector(context.Background(), svc, q)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.want == "" && m != nil:
				t.Errorf("mismatch reported: %s", m)
			case tc.want != "" && (m == nil || !strings.Contains(m.String(), tc.want)):
				t.Errorf("got %v, want %q", m, tc.want)
			}
		})
	}
}
