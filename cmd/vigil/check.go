package main

import (
	"fmt"
	"io"

	"github.com/alecthomas/kingpin/v2"

	"github.com/vigilhq/vigil/alerting"
	"github.com/vigilhq/vigil/internal/config"
)

type checkCommand struct {
	stdout io.Writer
	files  []string
}

func newCheckCommand(app *kingpin.Application, stdout, _ io.Writer) *checkCommand {
	c := &checkCommand{stdout: stdout}
	check := app.Command("check", "Check files before they are deployed.")
	cfg := check.Command("config", "Check Vigil configuration files; exits 1 naming the first problem of each invalid file.")
	cfg.Arg("config-files", "The configuration files to check.").Required().ExistingFilesVar(&c.files)
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
		fmt.Fprintf(c.stdout, "  SUCCESS: %s is valid Vigil config (%d rule files)\n\n", f, len(rules))
	}
	if failed > 0 {
		return exitWith(exitFailure, fmt.Errorf("%d of %d config files are invalid", failed, len(c.files)))
	}
	return nil
}
