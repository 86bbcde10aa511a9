// Package dashboards generates Grafana dashboards for Vigil from the service
// catalog with the Grafana Foundation SDK: one dashboard per service and
// environment, a deployments overview and a Vigil self-monitoring
// dashboard. It also writes Grafana provisioning files and pushes
// dashboards through Grafana's HTTP API.
package dashboards

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/internal/semconv"
)

// Config says how the generated dashboards refer to Vigil.
type Config struct {
	// DatasourceName and DatasourceUID are the Prometheus datasource the
	// ${datasource} variable selects by default, and the one the
	// provisioning file creates. Panels never name a uid directly.
	DatasourceName string
	DatasourceUID  string
	// VigilURL is the URL Grafana's datasource points at.
	VigilURL string
	// DashboardsPath is where Grafana reads the dashboard JSON files from
	// (the provider's options.path). Empty: the absolute path of the
	// generated dashboards folder, which suits a Grafana on the same host.
	DashboardsPath string
	// LogDimensions are the log_metrics.dimensions of the Vigil the
	// dashboards read: their labels are on log_records_total. A catalog
	// matcher on any other label is left out of a service's log panels,
	// which it would leave empty.
	LogDimensions []string
}

// logLabels are the labels log_records_total carries.
func (c Config) logLabels() []string {
	out := append([]string(nil), semconv.LogRecordLabels...)
	for _, d := range c.LogDimensions {
		out = append(out, semconv.DimensionLabel(d))
	}
	return out
}

// DefaultConfig points at a Vigil on its default address.
func DefaultConfig() Config {
	return Config{DatasourceName: "Vigil", DatasourceUID: "vigil", VigilURL: "http://127.0.0.1:9400"}
}

var uidRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,40}$`)

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if c.DatasourceName == "" {
		return errors.New("datasource name is required")
	}
	if !uidRE.MatchString(c.DatasourceUID) {
		return fmt.Errorf("datasource uid %q: Grafana uids are 1-40 letters, digits, '-' or '_'", c.DatasourceUID)
	}
	if !strings.HasPrefix(c.VigilURL, "http://") && !strings.HasPrefix(c.VigilURL, "https://") {
		return fmt.Errorf("vigil url %q: must start with http:// or https://", c.VigilURL)
	}
	return nil
}

// Dashboard is one generated dashboard and the Grafana folder it belongs to.
type Dashboard struct {
	// Folder is the Grafana folder title: the environment for service
	// dashboards, "Vigil" for the overview and self-monitoring.
	Folder string
	Model  dashboard.Dashboard
}

// UID is the dashboard's uid.
func (d Dashboard) UID() string { return *d.Model.Uid }

// JSON is the dashboard model as Grafana stores it, indented.
func (d Dashboard) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(d.Model, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("marshal dashboard %s: %w", d.UID(), err)
	}
	return append(b, '\n'), nil
}

// VigilFolder holds the dashboards that are not about one environment.
const VigilFolder = "Vigil"

// Tags every generated dashboard carries; links find dashboards by them.
const (
	tagVigil   = "vigil"
	tagService = "vigil-service"
)

// Generate builds every dashboard for the catalog: the deployments
// overview, the self-monitoring dashboard, then one per catalog service in
// catalog order.
func Generate(cat *catalog.Catalog, cfg Config) ([]Dashboard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dashboards config: %w", err)
	}
	var out []Dashboard
	ov, err := Overview(cat, cfg)
	if err != nil {
		return nil, err
	}
	out = append(out, ov)
	self, err := SelfMonitoring(cfg)
	if err != nil {
		return nil, err
	}
	out = append(out, self)
	for _, s := range cat.Services {
		d, err := Service(cat, s, cfg)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// ServiceUID is the uid of a service's dashboard in an environment:
// readable when it fits Grafana's 40 characters, hashed when it does not.
func ServiceUID(service, environment string) string {
	uid := "vigil-svc-" + sanitize(service)
	if environment != "" {
		uid += "-" + sanitize(environment)
	}
	if len(uid) <= 40 {
		return uid
	}
	sum := sha256.Sum256([]byte(service + "\xff" + environment))
	return uid[:29] + "-" + hex.EncodeToString(sum[:])[:10]
}

var unsafeUID = regexp.MustCompile(`[^a-zA-Z0-9_-]`)

func sanitize(s string) string { return unsafeUID.ReplaceAllString(s, "_") }

// build finishes a dashboard builder, numbering panels so that Grafana and
// links can address them.
func build(b *dashboard.DashboardBuilder, uid string) (dashboard.Dashboard, error) {
	d, err := b.Build()
	if err != nil {
		return dashboard.Dashboard{}, fmt.Errorf("build dashboard %s: %w", uid, err)
	}
	id := uint32(1)
	for _, p := range d.Panels {
		switch {
		case p.Panel != nil:
			p.Panel.Id = ptr(id)
			id++
		case p.RowPanel != nil:
			p.RowPanel.Id = id
			id++
			for i := range p.RowPanel.Panels {
				p.RowPanel.Panels[i].Id = ptr(id)
				id++
			}
		}
	}
	return d, nil
}
