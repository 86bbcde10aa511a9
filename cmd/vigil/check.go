package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/model"

	"github.com/vigilhq/vigil/alerting"
	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/internal/config"
	"github.com/vigilhq/vigil/internal/semconv"
	"github.com/vigilhq/vigil/query"
)

type checkCommand struct {
	stdout io.Writer
	files  []string
	server string
	auth   clientAuth
}

func newCheckCommand(app *kingpin.Application, stdout, _ io.Writer) *checkCommand {
	c := &checkCommand{stdout: stdout}
	check := app.Command("check", "Check files before they are deployed.")
	cfg := check.Command("config", "Check Vigil configuration files and the catalog they name; exits 1 naming the first problem of each invalid file, warns about catalog matchers the derived series cannot carry.")
	cfg.Arg("config-files", "The configuration files to check.").Required().ExistingFilesVar(&c.files)
	cfg.Flag("server", "A running Vigil (URL): also check that each catalog service's selector matches the span metrics its service sends there (a namespace or environment no sender sets).").PlaceHolder("http://127.0.0.1:9400").StringVar(&c.server)
	c.auth.addBearerTokenFlag(cfg)
	c.auth.addHTTPConfigFlag(cfg)
	return c
}

func (*checkCommand) name() string { return "check config" }

func (c *checkCommand) run() error {
	failed := 0
	for _, f := range c.files {
		fmt.Fprintf(c.stdout, "Checking %s\n", f)
		cfg, err := config.LoadFile(f)
		if err != nil {
			fmt.Fprintf(c.stdout, "  FAILED: %v\n\n", err)
			failed++
			continue
		}
		rules, err := alerting.CheckRuleFiles(cfg.RuleFiles)
		if err != nil {
			fmt.Fprintf(c.stdout, "  FAILED: %v\n\n", err)
			failed++
			continue
		}
		// The credentials as serve loads them: the web config file, every
		// token file (present, one token, none shared) and the users' scopes.
		web, err := loadWebConfig(cfg.Web.ConfigFile)
		if err == nil {
			err = auth.New(nil, nil).Load(cfg.Auth, web)
		}
		if err != nil {
			fmt.Fprintf(c.stdout, "  FAILED: %v\n\n", err)
			failed++
			continue
		}
		var warnings []string
		if cfg.Deploy.Catalog != "" {
			cat, err := catalog.Load(cfg.Deploy.Catalog)
			if err != nil {
				fmt.Fprintf(c.stdout, "  FAILED: deploy.catalog: %v\n\n", err)
				failed++
				continue
			}
			warnings = matcherWarnings(cat, cfg)
			if c.server != "" {
				live, err := c.selectorWarnings(cat)
				if err != nil {
					return exitWith(exitInternal, err)
				}
				warnings = append(warnings, live...)
			}
		}
		for _, w := range warnings {
			fmt.Fprintf(c.stdout, "  WARNING: %s\n", w)
		}
		fmt.Fprintf(c.stdout, "  SUCCESS: %s is valid Vigil config (%d rule files, %d tokens)\n\n", f, len(rules), len(cfg.Auth.Tokens))
	}
	if failed > 0 {
		return exitWith(exitFailure, fmt.Errorf("%d of %d config files are invalid", failed, len(c.files)))
	}
	return nil
}

// matcherWarnings names each catalog matcher on a label that the span or
// log metrics Vigil derives never carry (with this config's dimensions).
// Span signals, rules and panels with such a matcher select nothing
// unless the span metrics come from elsewhere with that label; log signals
// and panels leave the matcher out and count the service's records of
// every value of the label.
func matcherWarnings(cat *catalog.Catalog, cfg config.Config) []string {
	spanLabels := append([]string(nil), semconv.SpanMetricLabels...)
	for _, d := range cfg.SpanMetrics.Dimensions {
		spanLabels = append(spanLabels, semconv.DimensionLabel(d))
	}
	logLabels := cfg.LogMetrics.Labels()
	var out []string
	for _, s := range cat.Services {
		for _, l := range s.MatcherLabels() {
			at := fmt.Sprintf("catalog service %s (%s): matcher on %q", s.Name, s.Environment, l)
			if !slices.Contains(spanLabels, l) {
				out = append(out, fmt.Sprintf("%s: span metrics have no such label, so its span signals, rules and panels select nothing unless span metrics with it come from elsewhere; add an attribute named %s to span_metrics.dimensions", at, l))
			}
			if !slices.Contains(logLabels, l) {
				out = append(out, fmt.Sprintf("%s: log_records_total has no such label, so its log signal and panels count the records of every %s; add an attribute named %s to log_metrics.dimensions", at, l, l))
			}
		}
	}
	return out
}

// selectorWarnings asks the server at --server whether each catalog
// service's selector matches the span metrics its service sends.
func (c *checkCommand) selectorWarnings(cat *catalog.Catalog) ([]string, error) {
	rt, err := c.auth.roundTripper()
	if err != nil {
		return nil, err
	}
	client, err := query.NewClient(c.server, rt)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	found, err := catalog.CheckSelectors(ctx, cat, serverLabelSets{client})
	if err != nil {
		return nil, fmt.Errorf("--server %s: %w", c.server, err)
	}
	var out []string
	for _, m := range found {
		out = append(out, m.String())
	}
	return out, nil
}

// serverLabelSets runs catalog checks on a server's query API.
type serverLabelSets struct{ c *query.Client }

func (s serverLabelSets) LabelSets(ctx context.Context, expr string) ([]map[string]string, error) {
	res, err := s.c.Instant(ctx, expr, time.Now(), 0)
	if err != nil {
		return nil, err
	}
	vec, ok := res.Value.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("%s: want a vector, got %s", expr, res.Value.Type())
	}
	out := make([]map[string]string, 0, len(vec))
	for _, smp := range vec {
		m := map[string]string{}
		for k, v := range smp.Metric {
			m[string(k)] = string(v)
		}
		out = append(out, m)
	}
	return out, nil
}
