package deploy

import (
	"time"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/deploy/verdict"
)

// ServiceSignals are the signals a verification of a service judges: the
// default ones — with the service's own request and error counts
// (catalog signals) in place of the span metrics' when it declares them —
// its SLOs as absolute bounds, and extra (deploy.signals).
func ServiceSignals(svc catalog.Service, inCatalog bool, extra []verdict.Signal) []verdict.Signal {
	out := verdict.DefaultSignals()
	if inCatalog && svc.Signals != nil {
		req, errs := svc.Signals.RequestsQuery(), svc.Signals.ErrorsQuery()
		for i := range out {
			s := &out[i]
			switch s.Name {
			case "request_rate":
				s.Query = req
			case "error_ratio":
				s.Query, s.Total = errs, req
			case "log_error_ratio":
				s.Total = req // error log lines per unit of work
			}
			if s.Kind == verdict.KindRatio || s.Kind == verdict.KindTraffic {
				s.Unit = svc.Signals.Unit
			}
		}
	}
	out = append(out, sloSignals(svc, inCatalog, out)...)
	return append(out, extra...)
}

// sloSignals turn a catalog service's SLOs into absolute bounds on its
// signals (the service's error ratio: its own counts where it has them).
func sloSignals(svc catalog.Service, ok bool, signals []verdict.Signal) []verdict.Signal {
	if !ok {
		return nil
	}
	var out []verdict.Signal
	if a := svc.SLOs.Availability; a != nil {
		// The error ratio, failing at once when it is significantly above
		// the error budget, and compared with the baseline for a regression
		// of the whole budget.
		budget := catalog.ErrorBudget(a.Objective)
		for _, s := range signals {
			if s.Name == "error_ratio" {
				s.Name, s.Max, s.Weight, s.Tolerance, s.Floor = "slo_availability", &budget, 1, 0, budget
				out = append(out, s)
			}
		}
	}
	if l := svc.SLOs.Latency; l != nil {
		th := time.Duration(l.Threshold).Seconds()
		out = append(out, verdict.Signal{Name: "slo_latency", Query: verdict.LatencyQuery(l.Objective / 100), Max: &th, Weight: 1, Tolerance: 0.25, Floor: th / 10})
	}
	return out
}

// hasSLOs reports whether a catalog service has an SLO to judge a first
// deploy against.
func hasSLOs(svc catalog.Service, ok bool) bool {
	return ok && (svc.SLOs.Availability != nil || svc.SLOs.Latency != nil)
}
