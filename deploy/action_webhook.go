package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/deploy/verdict"
)

// WebhookActor calls a service's rollback webhook (a Spinnaker pipeline
// trigger, an Argo Rollouts abort behind a small relay, ...) with a JSON
// description of the deployment and verdict.
//
// The safety check is the receiver's: the body's expectedCurrentVersion is
// the version the target must still run for the rollback to apply. A
// receiver that finds another version answers 409 Conflict (or 412
// Precondition Failed), which Vigil records as a refused action, not an error.
type WebhookActor struct {
	Client *http.Client
}

// Kind implements Actor.
func (WebhookActor) Kind() string { return "webhook" }

// Applies implements Actor.
func (WebhookActor) Applies(svc catalog.Service) bool { return svc.Rollback.Webhook != nil }

// WebhookPayload is the body POSTed to a rollback webhook.
type WebhookPayload struct {
	Action      string `json:"action"` // always "rollback"
	Service     string `json:"service"`
	Namespace   string `json:"namespace,omitempty"`
	Environment string `json:"environment,omitempty"`
	Version     string `json:"version"`
	// ExpectedCurrentVersion is the version the target must still run: the
	// condemned one. Answer 409 when it runs another and do nothing.
	ExpectedCurrentVersion string   `json:"expectedCurrentVersion"`
	RollbackTo             string   `json:"rollbackTo,omitempty"`
	DeploymentID           string   `json:"deploymentId,omitempty"`
	VerdictID              string   `json:"verdictId,omitempty"`
	Reason                 string   `json:"reason"`
	Score                  float64  `json:"score"`
	FailingSignals         []string `json:"failingSignals,omitempty"`
	PipelineURL            string   `json:"pipelineUrl,omitempty"`
	PreviousVersion        string   `json:"previousVersion,omitempty"`
	// Summary is the verdict in plain words, naming the signal that decided
	// it with its numbers.
	Summary string `json:"summary,omitempty"`
	// Stage is "verify", or "watch" for a regression found after the promotion.
	Stage string `json:"stage,omitempty"`
}

// DryRun implements DryRunner: the webhook's target. Its safety check is
// the receiver's, which a dry run cannot ask without calling it: in shadow
// mode it is not called.
func (WebhookActor) DryRun(_ context.Context, svc catalog.Service, _ Deployment, _ verdict.Verdict) (string, error) {
	return svc.Rollback.Webhook.URL, nil
}

// Rollback implements Actor.
func (a WebhookActor) Rollback(ctx context.Context, svc catalog.Service, d Deployment, v verdict.Verdict) (string, error) {
	wh := svc.Rollback.Webhook
	p := WebhookPayload{
		Action: "rollback", Service: d.Service, Namespace: first(d.Namespace, svc.Namespace), Environment: d.Environment,
		Version: d.Version, ExpectedCurrentVersion: first(v.Version, d.Version), RollbackTo: first(d.PreviousVersion, v.Baseline), DeploymentID: d.ID, VerdictID: v.ID,
		Reason: v.Reason, Score: v.Score, PipelineURL: d.URL, PreviousVersion: d.PreviousVersion, Summary: v.Summary, Stage: v.Stage,
	}
	for _, s := range v.Signals {
		if s.Status == verdict.StatusFail {
			p.FailingSignals = append(p.FailingSignals, s.Name)
		}
	}
	body, err := json.Marshal(p)
	if err != nil {
		return wh.URL, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, wh.URL, bytes.NewReader(body))
	if err != nil {
		return wh.URL, fmt.Errorf("rollback webhook %s: %w", wh.URL, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "vigil")
	if wh.BearerTokenFile != "" {
		tok, err := os.ReadFile(wh.BearerTokenFile)
		if err != nil {
			return wh.URL, fmt.Errorf("rollback webhook token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	c := a.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return wh.URL, fmt.Errorf("rollback webhook %s: %w", wh.URL, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode == http.StatusConflict || resp.StatusCode == http.StatusPreconditionFailed {
		return wh.URL, fmt.Errorf("rollback webhook %s answered %s: %s: %w", wh.URL, resp.Status, strings.TrimSpace(string(msg)), ErrTargetChanged)
	}
	if resp.StatusCode/100 != 2 {
		return wh.URL, fmt.Errorf("rollback webhook %s answered %s: %s", wh.URL, resp.Status, strings.TrimSpace(string(msg)))
	}
	return wh.URL, nil
}
