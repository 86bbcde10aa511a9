package deploy

import (
	"strings"
	"testing"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/deploy/verdict"
)

func TestSLOSignals(t *testing.T) {
	c, err := catalog.Load("../catalog/testdata/catalog.yml")
	if err != nil {
		t.Fatal(err)
	}
	checkout, _ := c.Service("checkout", "")
	sigs := sloSignals(checkout, true, verdict.DefaultSignals())
	if len(sigs) != 2 {
		t.Fatalf("signals = %+v", sigs)
	}
	byName := map[string]verdict.Signal{}
	for _, s := range sigs {
		if err := s.Validate(); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
		byName[s.Name] = s
	}
	if a := byName["slo_availability"]; a.Max == nil || *a.Max < 0.000999 || *a.Max > 0.001001 || !strings.Contains(a.Query, "STATUS_CODE_ERROR") {
		t.Errorf("availability SLO 99.9 → %+v", a)
	}
	if l := byName["slo_latency"]; l.Max == nil || *l.Max != 0.3 || !strings.HasPrefix(l.Query, "histogram_quantile(0.99,") {
		t.Errorf("latency SLO 99%% under 300ms → %+v (max %v)", l, *l.Max)
	}
	cart, _ := c.Service("cart", "")
	if s := sloSignals(cart, true, verdict.DefaultSignals()); len(s) != 1 || s[0].Name != "slo_availability" {
		t.Errorf("cart (availability only) → %+v", s)
	}
	if s := sloSignals(catalog.Service{}, false, nil); s != nil {
		t.Errorf("service outside the catalog → %+v", s)
	}
}
