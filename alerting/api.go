package alerting

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"

	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/query"
)

var selectorParser = parser.NewParser(parser.Options{})

// Mux is where the API routes are registered, each with its scope (*auth.Mux).
type Mux interface {
	Handle(pattern string, scope auth.Scope, h http.Handler, opts ...auth.RouteOption)
}

// Register adds /api/v1/rules, /api/v1/alerts and /api/v1/alertmanagers,
// answering as Prometheus does (Grafana's alerting views read them).
func (m *Manager) Register(mux Mux) {
	mux.Handle("GET /api/v1/rules", auth.ScopeRead, query.Endpoint(m.rulesEndpoint))
	mux.Handle("GET /api/v1/alerts", auth.ScopeRead, query.Endpoint(m.alertsEndpoint))
	mux.Handle("GET /api/v1/alertmanagers", auth.ScopeRead, query.Endpoint(m.alertmanagersEndpoint))
}

// Alert is an active alert as /api/v1/alerts shows it.
type Alert struct {
	Labels          labels.Labels `json:"labels"`
	Annotations     labels.Labels `json:"annotations"`
	State           string        `json:"state"`
	ActiveAt        *time.Time    `json:"activeAt,omitempty"`
	KeepFiringSince *time.Time    `json:"keepFiringSince,omitempty"`
	Value           string        `json:"value"`
}

// RuleGroup is a group as /api/v1/rules shows it.
type RuleGroup struct {
	Name           string    `json:"name"`
	File           string    `json:"file"`
	Rules          []any     `json:"rules"`
	Interval       float64   `json:"interval"`
	Limit          int       `json:"limit"`
	EvaluationTime float64   `json:"evaluationTime"`
	LastEvaluation time.Time `json:"lastEvaluation"`
}

// AlertingRule is an alerting rule as /api/v1/rules shows it.
type AlertingRule struct {
	State          string        `json:"state"`
	Name           string        `json:"name"`
	Query          string        `json:"query"`
	Duration       float64       `json:"duration"`
	KeepFiringFor  float64       `json:"keepFiringFor"`
	Labels         labels.Labels `json:"labels"`
	Annotations    labels.Labels `json:"annotations"`
	Alerts         []Alert       `json:"alerts"`
	Health         string        `json:"health"`
	LastError      string        `json:"lastError,omitempty"`
	EvaluationTime float64       `json:"evaluationTime"`
	LastEvaluation time.Time     `json:"lastEvaluation"`
	Type           string        `json:"type"`
}

// RecordingRule is a recording rule as /api/v1/rules shows it.
type RecordingRule struct {
	Name           string        `json:"name"`
	Query          string        `json:"query"`
	Labels         labels.Labels `json:"labels"`
	Health         string        `json:"health"`
	LastError      string        `json:"lastError,omitempty"`
	EvaluationTime float64       `json:"evaluationTime"`
	LastEvaluation time.Time     `json:"lastEvaluation"`
	Type           string        `json:"type"`
}

func apiAlert(a *rules.Alert) Alert {
	out := Alert{
		Labels:      a.Labels,
		Annotations: a.Annotations,
		State:       a.State.String(),
		Value:       strconv.FormatFloat(a.Value, 'e', -1, 64),
	}
	if !a.ActiveAt.IsZero() {
		t := a.ActiveAt
		out.ActiveAt = &t
	}
	if !a.KeepFiringSince.IsZero() {
		t := a.KeepFiringSince
		out.KeepFiringSince = &t
	}
	return out
}

func (m *Manager) alertsEndpoint(*http.Request) (any, error) {
	alerts := []Alert{}
	for _, r := range m.rules.AlertingRules() {
		for _, a := range r.ActiveAlerts() {
			alerts = append(alerts, apiAlert(a))
		}
	}
	return map[string]any{"alerts": alerts}, nil
}

// rulesEndpoint supports Prometheus's filters: type=alert|record,
// rule_name[], rule_group[], file[], match[] and exclude_alerts.
func (m *Manager) rulesEndpoint(r *http.Request) (any, error) {
	typ := r.Form.Get("type")
	if typ != "" && typ != "alert" && typ != "record" {
		return nil, query.BadData(fmt.Errorf("invalid query parameter type=%q: want alert or record", typ))
	}
	excludeAlerts := false
	if v := r.Form.Get("exclude_alerts"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, query.BadData(fmt.Errorf("parse exclude_alerts: %w", err))
		}
		excludeAlerts = b
	}
	var matcherSets [][]*labels.Matcher
	for _, s := range r.Form["match[]"] {
		ms, err := selectorParser.ParseMetricSelector(s)
		if err != nil {
			return nil, query.BadData(fmt.Errorf("parse match[] %q: %w", s, err))
		}
		matcherSets = append(matcherSets, ms)
	}
	names, groupNames, files := r.Form["rule_name[]"], r.Form["rule_group[]"], r.Form["file[]"]
	keep := func(list []string, v string) bool { return len(list) == 0 || slices.Contains(list, v) }

	groups := []RuleGroup{}
	for _, g := range m.rules.RuleGroups() {
		if !keep(groupNames, g.Name()) || !keep(files, g.File()) {
			continue
		}
		out := RuleGroup{
			Name:           g.Name(),
			File:           g.File(),
			Rules:          []any{},
			Interval:       g.Interval().Seconds(),
			Limit:          g.Limit(),
			EvaluationTime: g.GetEvaluationTime().Seconds(),
			LastEvaluation: g.GetLastEvaluation(),
		}
		for _, rule := range g.Rules(matcherSets...) {
			if !keep(names, rule.Name()) {
				continue
			}
			lastErr := ""
			if err := rule.LastError(); err != nil {
				lastErr = err.Error()
			}
			switch rule := rule.(type) {
			case *rules.AlertingRule:
				if typ == "record" {
					continue
				}
				ar := AlertingRule{
					State:          rule.State().String(),
					Name:           rule.Name(),
					Query:          rule.Query().String(),
					Duration:       rule.HoldDuration().Seconds(),
					KeepFiringFor:  rule.KeepFiringFor().Seconds(),
					Labels:         rule.Labels(),
					Annotations:    rule.Annotations(),
					Health:         string(rule.Health()),
					LastError:      lastErr,
					EvaluationTime: rule.GetEvaluationDuration().Seconds(),
					LastEvaluation: rule.GetEvaluationTimestamp(),
					Type:           "alerting",
				}
				if !excludeAlerts {
					ar.Alerts = []Alert{}
					for _, a := range rule.ActiveAlerts() {
						ar.Alerts = append(ar.Alerts, apiAlert(a))
					}
				}
				out.Rules = append(out.Rules, ar)
			case *rules.RecordingRule:
				if typ == "alert" {
					continue
				}
				out.Rules = append(out.Rules, RecordingRule{
					Name:           rule.Name(),
					Query:          rule.Query().String(),
					Labels:         rule.Labels(),
					Health:         string(rule.Health()),
					LastError:      lastErr,
					EvaluationTime: rule.GetEvaluationDuration().Seconds(),
					LastEvaluation: rule.GetEvaluationTimestamp(),
					Type:           "recording",
				})
			}
		}
		if len(out.Rules) > 0 || (len(names) == 0 && typ == "" && len(matcherSets) == 0) {
			groups = append(groups, out)
		}
	}
	return map[string]any{"groups": groups}, nil
}

func (m *Manager) alertmanagersEndpoint(*http.Request) (any, error) {
	type am struct {
		URL string `json:"url"`
	}
	active, dropped := []am{}, []am{}
	for _, u := range m.notifier.Alertmanagers() {
		active = append(active, am{u.String()})
	}
	for _, u := range m.notifier.DroppedAlertmanagers() {
		dropped = append(dropped, am{u.String()})
	}
	return map[string]any{"activeAlertmanagers": active, "droppedAlertmanagers": dropped}, nil
}
