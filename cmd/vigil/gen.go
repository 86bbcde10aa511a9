package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/alecthomas/kingpin/v2"

	"github.com/vigilhq/vigil/alerting/rulegen"
	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/dashboards"
)

// genFlags are shared by the `vigil gen` subcommands.
type genFlags struct {
	catalog string
	out     string
	output  string
}

func addGenFlags(cmd *kingpin.CmdClause, f *genFlags, defaultOut string) {
	cmd.Flag("catalog.file", "Service catalog (YAML).").Short('c').Default("catalog.yml").StringVar(&f.catalog)
	cmd.Flag("output-dir", "Directory to write into (created if missing).").Short('d').Default(defaultOut).StringVar(&f.out)
	cmd.Flag("output", "Output format of the listing: text or json.").Short('o').Default("text").EnumVar(&f.output, "text", "json")
}

// genRulesCommand writes SLO and deploy-health rule files and their unit tests.
type genRulesCommand struct {
	stdout io.Writer
	flags  genFlags
	rules  rulegen.Options
}

// addRuleFlags adds the deploy-health rule settings to cmd.
func addRuleFlags(cmd *kingpin.CmdClause, o *rulegen.Options) {
	cmd.Flag("deploy-alerts.for", "How long a deploy-health regression must hold before its alert fires (the rules' for:).").Default("2m").DurationVar(&o.For)
}

func newGenCommand(app *kingpin.Application) *kingpin.CmdClause {
	return app.Command("gen", "Generate Prometheus rules, Grafana dashboards and provisioning from the service catalog.")
}

func newGenRulesCommand(gen *kingpin.CmdClause, stdout io.Writer) *genRulesCommand {
	c := &genRulesCommand{stdout: stdout}
	cmd := gen.Command("rules", "Write SLO (multi-window, multi-burn-rate) and deploy-health rule files, with promtool unit tests, for every service of the catalog.")
	addGenFlags(cmd, &c.flags, "rules")
	addRuleFlags(cmd, &c.rules)
	return c
}

func (*genRulesCommand) name() string { return "gen rules" }

func (c *genRulesCommand) run() error {
	cat, err := catalog.Load(c.flags.catalog)
	if err != nil {
		return exitWith(exitFailure, err)
	}
	written, err := writeRules(cat, c.flags.out, c.rules)
	if err != nil {
		return exitWith(exitFailure, err)
	}
	return printWritten(c.stdout, c.flags.output, written)
}

// writeRules generates the rule files into dir.
func writeRules(cat *catalog.Catalog, dir string, opts rulegen.Options) ([]writtenFile, error) {
	files, err := rulegen.Generate(cat, opts)
	if err != nil {
		return nil, fmt.Errorf("generate rules: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	var out []writtenFile
	for _, f := range files {
		p := filepath.Join(dir, f.Name)
		if err := os.WriteFile(p, f.Content, 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", p, err)
		}
		kind := "rules"
		if filepath.Ext(trimYAML(f.Name)) == ".test" {
			kind = "rule tests"
		}
		out = append(out, writtenFile{Path: p, Kind: kind, Bytes: len(f.Content)})
	}
	return out, nil
}

func trimYAML(name string) string { return name[:len(name)-len(filepath.Ext(name))] }

// writtenFile is one line of a gen listing.
type writtenFile struct {
	Path  string `json:"path"`
	Kind  string `json:"kind"`
	Bytes int    `json:"bytes"`
}

func printWritten(w io.Writer, format string, files []writtenFile) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"files": files})
	}
	for _, f := range files {
		fmt.Fprintf(w, "wrote %-19s %s\n", f.Kind, f.Path)
	}
	return nil
}

// genAllCommand writes rules, dashboards and provisioning together.
type genAllCommand struct {
	stdout     io.Writer
	flags      genFlags
	rules      rulegen.Options
	cfg        dashboards.Config
	configFile string
}

func newGenAllCommand(gen *kingpin.CmdClause, stdout io.Writer) *genAllCommand {
	c := &genAllCommand{stdout: stdout, cfg: dashboards.DefaultConfig()}
	cmd := gen.Command("all", "Write rules (<output-dir>/rules) and Grafana dashboards with provisioning (<output-dir>/grafana) for the catalog.")
	addGenFlags(cmd, &c.flags, "out")
	addRuleFlags(cmd, &c.rules)
	addDashboardsFlags(cmd, &c.cfg, &c.configFile)
	return c
}

func (*genAllCommand) name() string { return "gen all" }

func (c *genAllCommand) run() error {
	cat, err := catalog.Load(c.flags.catalog)
	if err != nil {
		return exitWith(exitFailure, err)
	}
	if err := readLogDimensions(&c.cfg, c.configFile); err != nil {
		return exitWith(exitFailure, err)
	}
	rules, err := writeRules(cat, filepath.Join(c.flags.out, "rules"), c.rules)
	if err != nil {
		return exitWith(exitFailure, err)
	}
	dash, err := writeDashboards(cat, filepath.Join(c.flags.out, "grafana"), c.cfg)
	if err != nil {
		return exitWith(exitFailure, err)
	}
	return printWritten(c.stdout, c.flags.output, append(rules, dash...))
}
