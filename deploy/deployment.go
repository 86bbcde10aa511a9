// Package deploy records deployments (from a pipeline's generic JSON or the
// webhooks of Spinnaker, Argo CD, GitHub and Flagger), keeps them durably
// under the storage path, exposes them as series and over HTTP, and runs the
// verdict hook that tells a pipeline whether to promote or roll back.
package deploy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Strategies a deployment may declare.
const (
	StrategyCanary    = "canary"
	StrategyRolling   = "rolling"
	StrategyBlueGreen = "bluegreen"
)

// Deployment is one version of a service shipped to an environment.
type Deployment struct {
	ID              string     `json:"id"`
	Service         string     `json:"service"`
	Namespace       string     `json:"namespace,omitempty"`
	Environment     string     `json:"environment,omitempty"`
	Version         string     `json:"version"`
	PreviousVersion string     `json:"previousVersion,omitempty"`
	Pipeline        string     `json:"pipeline,omitempty"`
	Commit          string     `json:"commit,omitempty"`
	Strategy        string     `json:"strategy,omitempty"`
	StartedAt       time.Time  `json:"startedAt"`
	FinishedAt      *time.Time `json:"finishedAt,omitempty"`
	// Source is the format the event came in: generic, spinnaker, argocd, github, flagger.
	Source string `json:"source"`
	// Status is the pipeline's word for the deployment's state, when it gave one.
	Status string `json:"status,omitempty"`
	// URL links back to the pipeline run.
	URL string `json:"url,omitempty"`
	// Actions are the rollback actions taken for this deployment.
	Actions []ActionRecord `json:"actions,omitempty"`
	// WouldAct are the rollback actions a verdict called for and Vigil did
	// not perform — shadow mode, a regression after the promotion without
	// rollback.after_promotion, authentication off — with what each would
	// have done and whether it would have been refused.
	WouldAct []ActionRecord `json:"wouldAct,omitempty"`
}

// ActionRecord is one rollback action Vigil performed (or refused to
// perform), kept with the deployment.
type ActionRecord struct {
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"` // webhook, kubernetes
	Target  string    `json:"target"`
	Verdict string    `json:"verdictId,omitempty"`
	OK      bool      `json:"ok"`
	Message string    `json:"message,omitempty"`
	// Principal is who started it: the name of the token that asked for the
	// verification (or for the manual rollback); "anonymous" without auth.
	Principal string `json:"principal,omitempty"`
	// Refused says why the action was not performed; empty when it was.
	Refused Refusal `json:"refused,omitempty"`
}

// Refusal is why a rollback action was not performed.
type Refusal string

// Refusals.
const (
	// RefusedCooldown: the service was acted on less than
	// deploy.rollback_cooldown ago.
	RefusedCooldown Refusal = "cooldown"
	// RefusedAlreadyRolledBack: the deployment was already rolled back.
	RefusedAlreadyRolledBack Refusal = "already_rolled_back"
	// RefusedRequestSignals: the verdict relies on signals the verify
	// request brought, which deploy.allow_request_signals does not trust.
	RefusedRequestSignals Refusal = "request_signals"
	// RefusedTargetVersion: the actor did nothing because the target no
	// longer ran the version the verdict condemned (or its version could
	// not be told).
	RefusedTargetVersion Refusal = "target_version"
)

// FieldError is a payload that lacks or misstates a field; it names the
// field as the payload's format spells it.
type FieldError struct {
	Format string
	Field  string
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s payload: %s: %s", e.Format, e.Field, e.Reason)
}

func missing(format, field string) error {
	return &FieldError{Format: format, Field: field, Reason: "missing"}
}

// Validate checks what every deployment needs, naming the first missing field.
func (d *Deployment) Validate() error {
	var errs []error
	if d.Service == "" {
		errs = append(errs, missing(d.Source, "service"))
	}
	if d.Version == "" {
		errs = append(errs, missing(d.Source, "version"))
	}
	if d.StartedAt.IsZero() {
		errs = append(errs, missing(d.Source, "startedAt"))
	}
	switch d.Strategy {
	case "", StrategyCanary, StrategyRolling, StrategyBlueGreen:
	default:
		errs = append(errs, &FieldError{Format: d.Source, Field: "strategy", Reason: fmt.Sprintf("%q is not one of canary, rolling, bluegreen", d.Strategy)})
	}
	for _, f := range []struct{ name, v string }{{"service", d.Service}, {"version", d.Version}, {"namespace", d.Namespace}, {"environment", d.Environment}} {
		if len(f.v) > 256 || strings.ContainsAny(f.v, "\n\x00") {
			errs = append(errs, &FieldError{Format: d.Source, Field: f.name, Reason: "must be a single line of at most 256 bytes"})
		}
	}
	if d.FinishedAt != nil && d.FinishedAt.Before(d.StartedAt) {
		errs = append(errs, &FieldError{Format: d.Source, Field: "finishedAt", Reason: "is before startedAt"})
	}
	return errors.Join(errs...)
}

// key identifies a deployment: events about the same service, environment
// and version (started, finished) update one record.
func (d *Deployment) key() string {
	return d.Service + "\xff" + d.Environment + "\xff" + d.Version
}

// assignID derives a stable ID from the service, environment, version and start.
func (d *Deployment) assignID() {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\xff%d", d.key(), d.StartedAt.UnixMilli())))
	d.ID = hex.EncodeToString(h[:8])
}
