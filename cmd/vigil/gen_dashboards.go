package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/dashboards"
)

// genDashboardsCommand is `vigil gen dashboards`: Grafana dashboards and
// provisioning files from the service catalog, written to a directory
// and/or pushed to Grafana's HTTP API.
type genDashboardsCommand struct {
	stdout, stderr io.Writer

	catalog string
	out     string
	cfg     dashboards.Config
	push    dashboards.PushConfig
	timeout time.Duration
}

// newGenDashboardsCommand registers `dashboards` under the `gen` command
// (created in gen.go).
func newGenDashboardsCommand(gen *kingpin.CmdClause, stdout, stderr io.Writer) command {
	c := &genDashboardsCommand{stdout: stdout, stderr: stderr, cfg: dashboards.DefaultConfig()}
	cmd := gen.Command("dashboards", "Generate Grafana dashboards (one per service and environment, a deployments overview, Vigil self-monitoring) and Grafana provisioning files from the service catalog; optionally push them to Grafana.")
	cmd.Flag("catalog", "Service catalog YAML.").Default("catalog.yml").StringVar(&c.catalog)
	cmd.Flag("output", "Directory to write grafana/provisioning/ and grafana/dashboards/ into. Optional with --push.").Short('o').StringVar(&c.out)
	cmd.Flag("vigil.url", "URL Grafana reaches Vigil at, for the provisioned datasource.").Default(c.cfg.VigilURL).StringVar(&c.cfg.VigilURL)
	cmd.Flag("datasource.name", "Name of the provisioned Prometheus datasource, the dashboards' default.").Default(c.cfg.DatasourceName).StringVar(&c.cfg.DatasourceName)
	cmd.Flag("datasource.uid", "Uid of the provisioned Prometheus datasource.").Default(c.cfg.DatasourceUID).StringVar(&c.cfg.DatasourceUID)
	cmd.Flag("grafana.dashboards-path", "Path Grafana reads the dashboard JSON from (the provider's options.path). Default: the absolute path of <output>/grafana/dashboards.").StringVar(&c.cfg.DashboardsPath)
	cmd.Flag("push", "Grafana URL to create or update the dashboards at through its HTTP API, e.g. http://localhost:3000.").PlaceHolder("URL").StringVar(&c.push.URL)
	cmd.Flag("token", "Grafana service account token or API key, sent as a bearer token.").Envar("GRAFANA_TOKEN").StringVar(&c.push.Token)
	cmd.Flag("user", "Grafana user for basic auth (instead of --token).").Envar("GRAFANA_USER").StringVar(&c.push.User)
	cmd.Flag("password", "Grafana password for basic auth.").Envar("GRAFANA_PASSWORD").StringVar(&c.push.Password)
	cmd.Flag("org-id", "Grafana organisation id (X-Grafana-Org-Id); the user's current organisation when unset.").Int64Var(&c.push.OrgID)
	cmd.Flag("timeout", "Timeout of the whole push.").Default("2m").DurationVar(&c.timeout)
	return c
}

func (*genDashboardsCommand) name() string { return "gen dashboards" }

func (c *genDashboardsCommand) run() error {
	if c.out == "" && c.push.URL == "" {
		return exitWith(exitUsage, errors.New("nothing to do: give --output DIR, --push URL, or both"))
	}
	cat, err := catalog.Load(c.catalog)
	if err != nil {
		return exitWith(exitFailure, err)
	}
	if err := c.cfg.Validate(); err != nil {
		return exitWith(exitUsage, err)
	}
	if c.out != "" {
		written, err := dashboards.WriteAll(cat, c.out, c.cfg)
		if err != nil {
			return exitWith(exitFailure, err)
		}
		for _, f := range written {
			fmt.Fprintf(c.stdout, "wrote %s\n", strings.TrimPrefix(c.out+"/"+f, "./"))
		}
	}
	if c.push.URL == "" {
		return nil
	}
	pusher, err := dashboards.NewPusher(c.push)
	if err != nil {
		return exitWith(exitUsage, err)
	}
	ds, err := dashboards.Generate(cat, c.cfg)
	if err != nil {
		return exitWith(exitFailure, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	results, err := pusher.Push(ctx, ds)
	for _, r := range results {
		fmt.Fprintf(c.stdout, "%-9s %s (folder %s, version %d) %s%s\n", r.Outcome, r.UID, r.Folder, r.Version, strings.TrimRight(c.push.URL, "/"), r.URL)
	}
	if err != nil {
		var ge *dashboards.GrafanaError
		if errors.As(err, &ge) {
			return exitWith(exitFailure, err)
		}
		return exitWith(exitInternal, err)
	}
	return nil
}
