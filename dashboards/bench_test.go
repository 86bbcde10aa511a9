package dashboards

import (
	"fmt"
	"testing"

	"github.com/vigilhq/vigil/catalog"
)

// BenchmarkGenerate builds and encodes every dashboard of a catalog of
// 50 services, what `vigil gen dashboards` does for a mid-size team.
func BenchmarkGenerate(b *testing.B) {
	cat := &catalog.Catalog{}
	for i := range 50 {
		cat.Services = append(cat.Services, catalog.Service{
			Name: fmt.Sprintf("svc-%02d", i), Namespace: "shop", Environment: "production",
			SLOs: catalog.SLOs{Availability: &catalog.AvailabilitySLO{Objective: 99.9, Window: cat.Defaults.SLOWindow}},
		})
	}
	b.ReportAllocs()
	for b.Loop() {
		ds, err := Generate(cat, DefaultConfig())
		if err != nil {
			b.Fatal(err)
		}
		for _, d := range ds {
			if _, err := d.JSON(); err != nil {
				b.Fatal(err)
			}
		}
	}
}
