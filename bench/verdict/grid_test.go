package main

import (
	"testing"
	"time"

	"github.com/vigilhq/vigil/deploy/verdict"
)

// TestGridAtHighTraffic: with plenty of traffic and errors to count, the
// grid's healthy versions are promoted and its bad ones (errors doubled)
// rolled back, within a couple of minutes.
func TestGridAtHighTraffic(t *testing.T) {
	cfg := Config{Seed: 1, Step: 15 * time.Second, Window: 10 * time.Minute, Policy: verdict.DefaultPolicy()}
	gridRates, gridErrors = []float64{100}, []float64{0.05}
	defer func() { gridRates, gridErrors = []float64{1, 10, 100}, []float64{0.001, 0.01, 0.05} }()
	c := runGrid(cfg, 20)[0]
	if c.Healthy.Decided < 19 || c.Bad.Decided < 19 || c.Healthy.Median > 120 || c.Bad.Median > 120 {
		t.Errorf("at 100 req/s and 5%% errors: %+v", c)
	}
}
