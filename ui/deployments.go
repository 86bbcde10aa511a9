package ui

import (
	"net/http"
	"time"

	"github.com/vigilhq/vigil/deploy"
	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/plain"
)

// listLimit is how many deployments and verdicts the home page lists.
const listLimit = 50

type deploymentsPage struct {
	Service, Environment string
	Deployments          []deploymentRow
	Verdicts             []verdictRow
}

type deploymentRow struct {
	Started, StartedAt string
	Service            string
	Environment        string
	Version, Previous  string
	Commit             string
	Pipeline, URL      string
	Verdict            *verdictRow
	Action             string
}

type verdictRow struct {
	ID          string
	Evaluated   string
	Service     string
	Environment string
	Version     string
	Baseline    string
	Decision    string
	Class       string
	Summary     string
	Traffic     string
}

// decisionOf is the word and the CSS class of a verdict's decision.
func decisionOf(v *verdict.Verdict) (string, string) {
	if !v.Final {
		return "running", "wait"
	}
	switch v.Decision {
	case verdict.Promote:
		return "promote", "ok"
	case verdict.Rollback:
		return "rollback", "bad"
	case verdict.Error:
		return "error", "err"
	}
	return string(v.Decision), "wait"
}

func (u *UI) verdictRow(v *verdict.Verdict) verdictRow {
	d, class := decisionOf(v)
	return verdictRow{
		ID: v.ID, Evaluated: plain.Ago(v.EvaluatedAt, u.now()), Service: v.Service, Environment: v.Environment,
		Version: v.Version, Baseline: v.Baseline, Decision: d, Class: class, Summary: summaryOf(v),
		Traffic: plain.Duration(time.Duration(v.TrafficSeconds * float64(time.Second))),
	}
}

// summaryOf is the verdict in plain words.
func summaryOf(v *verdict.Verdict) string {
	return plain.Summary(v)
}

// deployments is the home page: recorded deployments with the verdict of
// each, and the latest verdicts (verifications need no recorded deployment).
func (u *UI) deployments(r *http.Request) (string, any, int) {
	q := r.URL.Query()
	p := deploymentsPage{Service: q.Get("service"), Environment: q.Get("environment")}
	verdicts := u.cfg.Deployments.Verdicts(p.Service, 1000)
	for _, d := range u.cfg.Deployments.Deployments(p.Service, p.Environment, listLimit) {
		row := deploymentRow{
			Started: plain.Ago(d.StartedAt, u.now()), StartedAt: d.StartedAt.UTC().Format(time.RFC3339),
			Service: d.Service, Environment: d.Environment, Version: d.Version, Previous: d.PreviousVersion,
			Commit: d.Commit, Pipeline: d.Pipeline, URL: d.URL,
		}
		if v := verdictFor(d, verdicts); v != nil {
			vr := u.verdictRow(v)
			row.Verdict = &vr
			row.Action = actionSummary(d.Actions, v.ID)
		}
		p.Deployments = append(p.Deployments, row)
	}
	for i := range verdicts {
		if p.Environment != "" && verdicts[i].Environment != p.Environment {
			continue
		}
		p.Verdicts = append(p.Verdicts, u.verdictRow(&verdicts[i]))
		if len(p.Verdicts) == listLimit {
			break
		}
	}
	return "deployments", p, http.StatusOK
}

// verdictFor is the latest verdict of a deployment's version since it
// started (verdicts come newest first).
func verdictFor(d deploy.Deployment, vs []verdict.Verdict) *verdict.Verdict {
	for i := range vs {
		v := &vs[i]
		if v.Service == d.Service && v.Version == d.Version && (d.Environment == "" || v.Environment == d.Environment) &&
			!v.Start.Before(d.StartedAt.Add(-time.Second)) {
			return v
		}
	}
	return nil
}

// actionSummary says what was done about a verdict: "rolled back by
// webhook", "not acted on (cooldown)", or "".
func actionSummary(actions []deploy.ActionRecord, verdictID string) string {
	for _, a := range actions {
		if a.Verdict != verdictID {
			continue
		}
		switch {
		case a.Refused != "":
			return "not acted on (" + string(a.Refused) + ")"
		case a.OK:
			return "rolled back by " + a.Kind
		default:
			return a.Kind + " rollback failed"
		}
	}
	return ""
}
