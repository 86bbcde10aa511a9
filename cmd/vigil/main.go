// Command vigil is the Vigil observability gateway: `vigil serve` runs the
// server; the other commands are clients of it for people and pipelines.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/version"
)

// Exit codes shared by the client commands, documented in the README.
const (
	exitOK       = 0
	exitFailure  = 1 // the server answered with an error (bad query, invalid config, ...)
	exitUsage    = 2 // the command line was wrong
	exitInternal = 3 // the server could not be reached or something else broke
)

// defaultVersion is used when the build did not stamp one (go run, go build).
const defaultVersion = "0.1.0-dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// exitError carries the exit code a command wants.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitWith(code int, err error) error { return &exitError{code: code, err: err} }

func run(args []string, stdout, stderr io.Writer) int {
	if version.Version == "" {
		version.Version = defaultVersion
	}
	app := kingpin.New("vigil", "Vigil: an observability gateway that ingests, aggregates and queries telemetry, and tells pipelines whether to promote or roll back a deployment.")
	app.UsageWriter(stderr)
	app.ErrorWriter(stderr)
	app.HelpFlag.Short('h')
	// `vigil verify --version v2` names the version under test, so the
	// global --version flag is left out of that command's parse.
	verifying := slices.Contains(args, "verify")
	if !verifying {
		app.Version(version.Print("vigil"))
	}

	gen := newGenCommand(app)
	var commands []command
	commands = append(commands,
		newGenRulesCommand(gen, stdout),
		newGenDashboardsCommand(gen, stdout, stderr),
		newGenAllCommand(gen, stdout),
		newServeCommand(app, stdout, stderr),
		newQueryCommand(app, stdout, stderr),
		newCheckCommand(app, stdout, stderr),
		newVerifyCommand(app, stdout, stderr, verifying),
		newDemoCommand(app, stdout, stderr),
		newVersionCommand(app, stdout),
	)

	selected, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "vigil: %v\n", err)
		return exitUsage
	}
	for _, c := range commands {
		if c.name() == selected {
			err = c.run()
			break
		}
	}
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintf(stderr, "vigil %s: %v\n", selected, ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "vigil %s: %v\n", selected, err)
	return exitFailure
}

// command is one subcommand.
type command interface {
	name() string
	run() error
}

type versionCommand struct{ stdout io.Writer }

func newVersionCommand(app *kingpin.Application, stdout io.Writer) *versionCommand {
	app.Command("version", "Print the version and build information.")
	return &versionCommand{stdout: stdout}
}

func (*versionCommand) name() string { return "version" }

func (c *versionCommand) run() error {
	fmt.Fprintln(c.stdout, version.Print("vigil"))
	return nil
}
