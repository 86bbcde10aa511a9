package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/vigilhq/vigil/deploy/verdict"
)

func main() {
	cfg := Config{Policy: verdict.DefaultPolicy()}
	flag.IntVar(&cfg.N, "n", 400, "deployments to simulate")
	flag.Uint64Var(&cfg.Seed, "seed", 1, "random seed (runs are deterministic)")
	flag.Float64Var(&cfg.RPS, "rps", 10, "nominal canary request rate")
	flag.DurationVar(&cfg.Step, "step", 15*time.Second, "sample step (deploy.step)")
	flag.DurationVar(&cfg.Window, "window", 10*time.Minute, "analysis window (deploy.window's default)")
	asJSON := flag.Bool("json", false, "print the report as JSON")
	backtest := flag.Bool("backtest", false, "also write the simulated deployments into Vigil's storage (a temporary directory) and backtest them")
	flag.Float64Var(&cfg.Policy.Alpha, "alpha", cfg.Policy.Alpha, "policy alpha")
	flag.Float64Var(&cfg.Policy.Beta, "beta", cfg.Policy.Beta, "policy beta (ratio signals)")
	flag.IntVar(&cfg.Policy.MinSamples, "min-samples", cfg.Policy.MinSamples, "policy min_samples")
	flag.Float64Var(&cfg.Policy.MinRequests, "min-requests", cfg.Policy.MinRequests, "policy min_requests")
	flag.Float64Var(&cfg.Policy.Confidence, "confidence", cfg.Policy.Confidence, "policy confidence (z)")
	errTol := flag.Float64("error-tolerance", -1, "override the error ratio signals' tolerance")
	errFloor := flag.Float64("error-floor", -1, "override the error ratio signals' floor")
	grid := flag.Int("grid", 0, "instead: the time-to-decision grid (traffic × baseline error ratio) with this many deployments of each kind per row")
	flag.Parse()
	if *grid > 0 {
		writeGrid(os.Stdout, cfg, runGrid(cfg, *grid))
		return
	}
	if *errTol >= 0 || *errFloor >= 0 {
		cfg.Signals = verdict.DefaultSignals()
		for i, s := range cfg.Signals {
			if s.Name == "error_ratio" || s.Name == "log_error_ratio" {
				if *errTol >= 0 {
					cfg.Signals[i].Tolerance = *errTol
				}
				if *errFloor >= 0 {
					cfg.Signals[i].Floor = *errFloor
				}
			}
		}
	}
	r := Summarise(Simulate(cfg))
	if *backtest {
		dir, err := os.MkdirTemp("", "vigil-backtest-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer os.RemoveAll(dir)
		t0 := time.Now()
		rep, err := BacktestSimulated(cfg, dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if *asJSON {
			_ = json.NewEncoder(os.Stdout).Encode(rep.Scores)
		} else {
			fmt.Print(backtestString(rep))
			fmt.Printf("(recorded and backtested in %s)\n\n", time.Since(t0).Round(time.Second))
		}
	}
	if *asJSON {
		_ = json.NewEncoder(os.Stdout).Encode(r)
		return
	}
	fmt.Printf("policy %+v, %.0f req/s canary, step %s, window %s, seed %d\n", cfg.Policy, cfg.RPS, cfg.Step, cfg.Window, cfg.Seed)
	fmt.Print(r)
}
