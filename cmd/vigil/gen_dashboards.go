package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/dashboards"
	"github.com/vigilhq/vigil/internal/config"
)

// genDashboardsCommand is `vigil gen dashboards`: Grafana dashboards and
// provisioning files from the service catalog, written to a directory and,
// with --push, created or updated through Grafana's HTTP API.
type genDashboardsCommand struct {
	stdout, stderr io.Writer

	flags      genFlags
	cfg        dashboards.Config
	configFile string
	push       dashboards.PushConfig
	timeout    time.Duration
}

// newGenDashboardsCommand registers `dashboards` under the `gen` command.
func newGenDashboardsCommand(gen *kingpin.CmdClause, stdout, stderr io.Writer) command {
	c := &genDashboardsCommand{stdout: stdout, stderr: stderr, cfg: dashboards.DefaultConfig()}
	cmd := gen.Command("dashboards", "Write Grafana dashboards (one per service and environment, a deployments overview, Vigil self-monitoring) and Grafana provisioning files (a datasource pointing at Vigil, a dashboards provider) for the catalog; with --push, create or update the dashboards in Grafana.")
	addGenFlags(cmd, &c.flags, "grafana")
	addDashboardsFlags(cmd, &c.cfg, &c.configFile)
	cmd.Flag("push", "Grafana URL to create or update the dashboards at through its HTTP API, e.g. http://localhost:3000.").PlaceHolder("URL").StringVar(&c.push.URL)
	cmd.Flag("token", "Grafana service account token or API key, sent as a bearer token.").Envar("GRAFANA_TOKEN").StringVar(&c.push.Token)
	cmd.Flag("user", "Grafana user for basic auth (instead of --token).").Envar("GRAFANA_USER").StringVar(&c.push.User)
	cmd.Flag("password", "Grafana password for basic auth.").Envar("GRAFANA_PASSWORD").StringVar(&c.push.Password)
	cmd.Flag("org-id", "Grafana organisation id (X-Grafana-Org-Id); the user's current organisation when unset.").Int64Var(&c.push.OrgID)
	cmd.Flag("timeout", "Timeout of the whole push.").Default("2m").DurationVar(&c.timeout)
	return c
}

// readLogDimensions takes the log_metrics.dimensions of the Vigil
// configuration at path, when one is given.
func readLogDimensions(cfg *dashboards.Config, path string) error {
	if path == "" {
		return nil
	}
	vc, err := config.LoadFile(path)
	if err != nil {
		return err
	}
	cfg.LogDimensions = vc.LogMetrics.Dimensions
	return nil
}

// addDashboardsFlags adds the flags that say how the dashboards and the
// provisioned datasource reach Vigil; `vigil gen all` can share them.
func addDashboardsFlags(cmd *kingpin.CmdClause, cfg *dashboards.Config, configFile *string) {
	cmd.Flag("config.file", "Configuration of the Vigil the dashboards read (vigil.yml): the log panels keep the catalog matchers on labels its log_metrics.dimensions add. Optional: without it, they keep none but those on service, namespace, environment and version.").StringVar(configFile)
	cmd.Flag("vigil.url", "URL Grafana reaches Vigil at, for the provisioned datasource.").Default(cfg.VigilURL).StringVar(&cfg.VigilURL)
	cmd.Flag("datasource.name", "Name of the provisioned Prometheus datasource, the dashboards' default.").Default(cfg.DatasourceName).StringVar(&cfg.DatasourceName)
	cmd.Flag("datasource.uid", "Uid of the provisioned Prometheus datasource.").Default(cfg.DatasourceUID).StringVar(&cfg.DatasourceUID)
	cmd.Flag("grafana.dashboards-path", "Path Grafana reads the dashboard JSON from (the provider's options.path). Default: the absolute path of <output-dir>/dashboards.").StringVar(&cfg.DashboardsPath)
}

func (*genDashboardsCommand) name() string { return "gen dashboards" }

func (c *genDashboardsCommand) run() error {
	cat, err := catalog.Load(c.flags.catalog)
	if err != nil {
		return exitWith(exitFailure, err)
	}
	if err := readLogDimensions(&c.cfg, c.configFile); err != nil {
		return exitWith(exitFailure, err)
	}
	if err := c.cfg.Validate(); err != nil {
		return exitWith(exitUsage, err)
	}
	var pusher *dashboards.Pusher
	if c.push.URL != "" {
		if pusher, err = dashboards.NewPusher(c.push); err != nil {
			return exitWith(exitUsage, err)
		}
	} else if c.push.Token != "" || c.push.User != "" {
		return exitWith(exitUsage, errors.New("--token, --user and --password need --push URL"))
	}

	files, err := writeDashboards(cat, c.flags.out, c.cfg)
	if err != nil {
		return exitWith(exitFailure, err)
	}
	var results []dashboards.PushResult
	var pushErr error
	if pusher != nil {
		ds, err := dashboards.Generate(cat, c.cfg)
		if err != nil {
			return exitWith(exitFailure, err)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		ctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		results, pushErr = pusher.Push(ctx, ds)
	}

	if c.flags.output == "json" {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		doc := map[string]any{"files": files}
		if pusher != nil {
			doc["pushed"] = pushedJSON(c.push.URL, results)
		}
		if err := enc.Encode(doc); err != nil {
			return err
		}
	} else {
		if err := printWritten(c.stdout, "text", files); err != nil {
			return err
		}
		for _, r := range results {
			fmt.Fprintf(c.stdout, "%-9s %s (folder %s, version %d) %s%s\n", r.Outcome, r.UID, r.Folder, r.Version, strings.TrimRight(c.push.URL, "/"), r.URL)
		}
	}
	if pushErr != nil {
		var ge *dashboards.GrafanaError
		if errors.As(pushErr, &ge) {
			return exitWith(exitFailure, pushErr)
		}
		return exitWith(exitInternal, pushErr)
	}
	return nil
}

// writeDashboards writes the dashboards and provisioning files into dir,
// listed as `vigil gen` lists what it wrote.
func writeDashboards(cat *catalog.Catalog, dir string, cfg dashboards.Config) ([]writtenFile, error) {
	written, err := dashboards.WriteAll(cat, dir, cfg)
	if err != nil {
		return nil, err
	}
	out := make([]writtenFile, 0, len(written))
	for _, w := range written {
		out = append(out, writtenFile{Path: filepath.Join(dir, filepath.FromSlash(w.Path)), Kind: w.Kind, Bytes: w.Bytes})
	}
	return out, nil
}

func pushedJSON(base string, rs []dashboards.PushResult) []map[string]any {
	out := make([]map[string]any, 0, len(rs))
	for _, r := range rs {
		out = append(out, map[string]any{
			"uid": r.UID, "title": r.Title, "folder": r.Folder, "outcome": r.Outcome,
			"version": r.Version, "url": strings.TrimRight(base, "/") + r.URL,
		})
	}
	return out
}
