package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Formats of deployment events Vigil understands, as named in
// POST /api/v1/deployments/{format}.
const (
	FormatGeneric   = "generic"
	FormatSpinnaker = "spinnaker"
	FormatArgoCD    = "argocd"
	FormatGitHub    = "github"
	FormatFlagger   = "flagger"
)

// Formats lists every accepted format.
var Formats = []string{FormatGeneric, FormatSpinnaker, FormatArgoCD, FormatGitHub, FormatFlagger}

// Decode turns a deployment event in format into a Deployment. Query
// parameters service, namespace, environment, version, previousVersion and
// strategy fill what the payload does not carry (Flagger events carry no
// version, for one). now is used when the event carries no start time.
// The error names the missing or malformed field.
func Decode(format string, body []byte, params url.Values, now time.Time) (Deployment, error) {
	var (
		d   Deployment
		err error
	)
	switch format {
	case FormatGeneric, "":
		format = FormatGeneric
		d, err = decodeGeneric(body)
	case FormatSpinnaker:
		d, err = decodeSpinnaker(body)
	case FormatArgoCD:
		d, err = decodeArgoCD(body)
	case FormatGitHub:
		d, err = decodeGitHub(body)
	case FormatFlagger:
		d, err = decodeFlagger(body)
	default:
		return d, fmt.Errorf("unknown deployment event format %q (want one of %s)", format, strings.Join(Formats, ", "))
	}
	if err != nil {
		return d, err
	}
	d.Source = format
	fill := func(dst *string, key string) {
		if v := params.Get(key); v != "" && *dst == "" {
			*dst = v
		}
	}
	fill(&d.Service, "service")
	fill(&d.Namespace, "namespace")
	fill(&d.Environment, "environment")
	fill(&d.Version, "version")
	fill(&d.PreviousVersion, "previousVersion")
	fill(&d.Strategy, "strategy")
	fill(&d.Pipeline, "pipeline")
	if format == FormatFlagger && d.Version == "" {
		return d, &FieldError{Format: FormatFlagger, Field: "metadata.version", Reason: "missing: Flagger events carry no version; add it to the webhook's metadata or pass ?version="}
	}
	if d.StartedAt.IsZero() {
		d.StartedAt = now
	}
	d.StartedAt = d.StartedAt.UTC()
	if d.FinishedAt != nil {
		f := d.FinishedAt.UTC()
		d.FinishedAt = &f
	}
	if err := d.Validate(); err != nil {
		return d, err
	}
	d.assignID()
	return d, nil
}

func unmarshal(format string, body []byte, v any, strict bool) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return fmt.Errorf("%s payload: empty body, want a JSON object", format)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return &FieldError{Format: format, Field: te.Field, Reason: fmt.Sprintf("want a %s, got a JSON %s", te.Type, te.Value)}
		}
		return fmt.Errorf("%s payload: %w", format, err)
	}
	if dec.More() {
		return fmt.Errorf("%s payload: more than one JSON value", format)
	}
	return nil
}

// Event is a deployment event in the generic format (POST
// /api/v1/deployments): what a pipeline sends, and what Client.Record sends.
type Event struct {
	Service         string     `json:"service"`
	Namespace       string     `json:"namespace,omitempty"`
	Environment     string     `json:"environment,omitempty"`
	Version         string     `json:"version"`
	PreviousVersion string     `json:"previousVersion,omitempty"`
	Pipeline        string     `json:"pipeline,omitempty"`
	Commit          string     `json:"commit,omitempty"`
	Strategy        string     `json:"strategy,omitempty"`
	StartedAt       *time.Time `json:"startedAt,omitempty"`
	FinishedAt      *time.Time `json:"finishedAt,omitempty"`
	Status          string     `json:"status,omitempty"`
	URL             string     `json:"url,omitempty"`
}

func decodeGeneric(body []byte) (Deployment, error) {
	var e Event
	if err := unmarshal(FormatGeneric, body, &e, true); err != nil {
		return Deployment{}, err
	}
	d := Deployment{
		Service: e.Service, Namespace: e.Namespace, Environment: e.Environment, Version: e.Version,
		PreviousVersion: e.PreviousVersion, Pipeline: e.Pipeline, Commit: e.Commit, Strategy: e.Strategy,
		FinishedAt: e.FinishedAt, Status: e.Status, URL: e.URL,
	}
	if e.StartedAt != nil {
		d.StartedAt = *e.StartedAt
	}
	return d, nil
}

// spinnakerEvent is an Echo webhook notification (details + content.execution).
type spinnakerEvent struct {
	Details *struct {
		Type        string `json:"type"`
		Application string `json:"application"`
	} `json:"details"`
	Content struct {
		ExecutionID string `json:"executionId"`
		Execution   *struct {
			ID          string `json:"id"`
			Name        string `json:"name"`
			Application string `json:"application"`
			Status      string `json:"status"`
			StartTime   *int64 `json:"startTime"`
			EndTime     *int64 `json:"endTime"`
			Trigger     struct {
				Type       string         `json:"type"`
				Tag        string         `json:"tag"`
				Hash       string         `json:"hash"`
				Parameters map[string]any `json:"parameters"`
				BuildInfo  map[string]any `json:"buildInfo"`
			} `json:"trigger"`
		} `json:"execution"`
	} `json:"content"`
}

func decodeSpinnaker(body []byte) (Deployment, error) {
	var e spinnakerEvent
	if err := unmarshal(FormatSpinnaker, body, &e, false); err != nil {
		return Deployment{}, err
	}
	if e.Details == nil {
		return Deployment{}, missing(FormatSpinnaker, "details")
	}
	x := e.Content.Execution
	if x == nil {
		return Deployment{}, missing(FormatSpinnaker, "content.execution")
	}
	p := func(k string) string {
		if v, ok := x.Trigger.Parameters[k].(string); ok {
			return v
		}
		return ""
	}
	d := Deployment{
		Service:         first(p("service"), x.Application, e.Details.Application),
		Namespace:       p("namespace"),
		Environment:     p("environment"),
		Version:         first(p("version"), x.Trigger.Tag),
		PreviousVersion: p("previousVersion"),
		Commit:          first(p("commit"), x.Trigger.Hash),
		Strategy:        p("strategy"),
		Pipeline:        "spinnaker:" + first(x.Name, e.Details.Application),
		Status:          x.Status,
	}
	if x.StartTime != nil && *x.StartTime > 0 {
		d.StartedAt = time.UnixMilli(*x.StartTime)
	}
	if x.EndTime != nil && *x.EndTime > 0 {
		t := time.UnixMilli(*x.EndTime)
		d.FinishedAt = &t
	}
	return d, nil
}

// argoApp is an Argo CD Application as rendered by the notifications
// template `{{toJson .app}}`.
type argoApp struct {
	Kind     string `json:"kind"`
	Metadata *struct {
		Name        string            `json:"name"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		Destination struct {
			Namespace string `json:"namespace"`
		} `json:"destination"`
	} `json:"spec"`
	Status struct {
		Sync struct {
			Revision string `json:"revision"`
		} `json:"sync"`
		Summary struct {
			Images []string `json:"images"`
		} `json:"summary"`
		OperationState *struct {
			Phase      string     `json:"phase"`
			StartedAt  *time.Time `json:"startedAt"`
			FinishedAt *time.Time `json:"finishedAt"`
		} `json:"operationState"`
	} `json:"status"`
}

func decodeArgoCD(body []byte) (Deployment, error) {
	var a argoApp
	if err := unmarshal(FormatArgoCD, body, &a, false); err != nil {
		return Deployment{}, err
	}
	if a.Metadata == nil {
		return Deployment{}, missing(FormatArgoCD, "metadata")
	}
	l, an := a.Metadata.Labels, a.Metadata.Annotations
	d := Deployment{
		Service:     first(an["vigil.dev/service"], l["app.kubernetes.io/name"], a.Metadata.Name),
		Namespace:   a.Spec.Destination.Namespace,
		Environment: first(an["vigil.dev/environment"], l["environment"]),
		Version:     first(an["vigil.dev/version"], l["app.kubernetes.io/version"], imageTag(a.Status.Summary.Images)),
		Strategy:    an["vigil.dev/strategy"],
		Commit:      a.Status.Sync.Revision,
		Pipeline:    "argocd:" + a.Metadata.Name,
	}
	if op := a.Status.OperationState; op != nil {
		d.Status = op.Phase
		if op.StartedAt != nil {
			d.StartedAt = *op.StartedAt
		}
		d.FinishedAt = op.FinishedAt
	}
	return d, nil
}

// imageTag is the tag of the first image reference that has one.
func imageTag(images []string) string {
	for _, img := range images {
		ref, _, _ := strings.Cut(img, "@")
		if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') && i < len(ref)-1 {
			return ref[i+1:]
		}
	}
	return ""
}

// githubEvent is a GitHub deployment_status webhook.
type githubEvent struct {
	DeploymentStatus *struct {
		State       string    `json:"state"`
		Environment string    `json:"environment"`
		TargetURL   string    `json:"target_url"`
		LogURL      string    `json:"log_url"`
		CreatedAt   time.Time `json:"created_at"`
	} `json:"deployment_status"`
	Deployment *struct {
		SHA         string          `json:"sha"`
		Ref         string          `json:"ref"`
		Environment string          `json:"environment"`
		Payload     json.RawMessage `json:"payload"`
		CreatedAt   time.Time       `json:"created_at"`
	} `json:"deployment"`
	Repository struct {
		Name     string `json:"name"`
		FullName string `json:"full_name"`
	} `json:"repository"`
}

func decodeGitHub(body []byte) (Deployment, error) {
	var e githubEvent
	if err := unmarshal(FormatGitHub, body, &e, false); err != nil {
		return Deployment{}, err
	}
	if e.DeploymentStatus == nil {
		return Deployment{}, missing(FormatGitHub, "deployment_status")
	}
	if e.Deployment == nil {
		return Deployment{}, missing(FormatGitHub, "deployment")
	}
	// deployment.payload is whatever the creator passed: an object or a JSON string.
	var extra map[string]any
	if len(e.Deployment.Payload) > 0 && e.Deployment.Payload[0] == '{' {
		_ = json.Unmarshal(e.Deployment.Payload, &extra)
	}
	p := func(k string) string {
		if v, ok := extra[k].(string); ok {
			return v
		}
		return ""
	}
	ref := strings.TrimPrefix(e.Deployment.Ref, "refs/tags/")
	d := Deployment{
		Service:         first(p("service"), e.Repository.Name),
		Namespace:       p("namespace"),
		Environment:     first(e.DeploymentStatus.Environment, e.Deployment.Environment),
		Version:         first(p("version"), ref),
		PreviousVersion: p("previousVersion"),
		Strategy:        p("strategy"),
		Commit:          e.Deployment.SHA,
		Pipeline:        "github:" + e.Repository.FullName,
		Status:          e.DeploymentStatus.State,
		URL:             first(e.DeploymentStatus.LogURL, e.DeploymentStatus.TargetURL),
		StartedAt:       e.Deployment.CreatedAt,
	}
	switch e.DeploymentStatus.State {
	case "success", "failure", "error", "inactive":
		if t := e.DeploymentStatus.CreatedAt; !t.IsZero() {
			d.FinishedAt = &t
		}
	}
	return d, nil
}

// flaggerEvent is Flagger's event webhook (and its other webhooks' payload).
type flaggerEvent struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Phase     string            `json:"phase"`
	Checksum  string            `json:"checksum"`
	Metadata  map[string]string `json:"metadata"`
}

func decodeFlagger(body []byte) (Deployment, error) {
	var e flaggerEvent
	if err := unmarshal(FormatFlagger, body, &e, false); err != nil {
		return Deployment{}, err
	}
	if e.Name == "" {
		return Deployment{}, missing(FormatFlagger, "name")
	}
	d := Deployment{
		Service:         first(e.Metadata["service"], e.Name),
		Namespace:       e.Namespace,
		Environment:     e.Metadata["environment"],
		Version:         e.Metadata["version"],
		PreviousVersion: e.Metadata["previousVersion"],
		Strategy:        StrategyCanary,
		Pipeline:        "flagger:" + e.Namespace + "/" + e.Name,
		Status:          e.Phase,
	}
	if ts := e.Metadata["timestamp"]; ts != "" {
		ms, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			return d, &FieldError{Format: FormatFlagger, Field: "metadata.timestamp", Reason: fmt.Sprintf("%q is not Unix milliseconds", ts)}
		}
		d.StartedAt = time.UnixMilli(ms)
	}
	return d, nil
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
