// Command vigil is the Vigil observability gateway: `vigil serve` runs the
// server; the other commands are clients of it for people and pipelines.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/version"
)

// Exit codes shared by the client commands, documented in docs/command-line.md.
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

// newApp builds the command line: the kingpin application and its commands.
// Kingpin allows one flag of a name per command path, so the commands that
// take --version as the version of a deployment (verify, deploy record) and
// the global --version (print Vigil's version) cannot live in one
// application: withGlobalVersion builds the one with the global flag, where
// those commands have no --version; parse picks the right one.
func newApp(stdout, stderr io.Writer, withGlobalVersion bool) (*kingpin.Application, []command) {
	app := kingpin.New("vigil", "Vigil: an observability gateway that ingests, aggregates and queries telemetry, and tells pipelines whether to promote or roll back a deployment.")
	app.UsageWriter(stderr)
	app.ErrorWriter(stderr)
	app.HelpFlag.Short('h')
	// --help and --version end the program through run, not os.Exit.
	app.Terminate(func(code int) { panic(terminated{code}) })
	if withGlobalVersion {
		app.Version(version.Print("vigil"))
	}
	gen := newGenCommand(app)
	deployCmd := app.Command("deploy", "Record deployments and list them, for pipelines.")
	verdicts := app.Command("verdicts", "List verdicts and show one with its evidence.")
	var commands []command
	commands = append(commands,
		newGenRulesCommand(gen, stdout),
		newGenDashboardsCommand(gen, stdout, stderr),
		newGenAllCommand(gen, stdout),
		newServeCommand(app, stdout, stderr),
		newQueryCommand(app, stdout, stderr),
		newCheckCommand(app, stdout, stderr),
		newVerifyCommand(app, stdout, stderr, !withGlobalVersion),
		newDeployRecordCommand(deployCmd, stdout, stderr, !withGlobalVersion),
		newDeployListCommand(deployCmd, stdout, stderr),
		newVerdictsListCommand(verdicts, stdout, stderr),
		newVerdictsShowCommand(verdicts, stdout, stderr),
		newBacktestCommand(app, stdout, stderr),
		newDemoCommand(app, stdout, stderr),
		newVersionCommand(app, stdout),
		newDocsCommand(app, stdout),
	)
	return app, commands
}

func run(args []string, stdout, stderr io.Writer) int {
	if version.Version == "" {
		version.Version = defaultVersion
	}
	selected, cmd, err := parse(args, stdout, stderr)
	var done terminated
	if errors.As(err, &done) {
		return done.code
	}
	if err != nil {
		fmt.Fprintf(stderr, "vigil: %v\n", err)
		return exitUsage
	}
	if err = cmd.run(); err == nil {
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

// parse parses the command line and returns the command to run, with every
// flag the command line left out at its default or environment variable.
//
// The command is found first by the application without the global
// --version: when it is one that takes --version itself, that application
// parses (and reports its errors, so `vigil verify --version` with an empty
// shell variable is a usage error, never a promote). Anything else — `vigil
// --version`, `vigil query verify --version` — is parsed by the application
// with the global --version, which prints Vigil's version.
func parse(args []string, stdout, stderr io.Writer) (selected string, cmd command, err error) {
	_, selected, cmd, err = parseApp(args, stdout, stderr)
	return selected, cmd, err
}

// parseApp is parse, returning the application that parsed too.
func parseApp(args []string, stdout, stderr io.Writer) (app *kingpin.Application, selected string, cmd command, err error) {
	defer func() {
		if r := recover(); r != nil {
			t, ok := r.(terminated)
			if !ok {
				panic(r)
			}
			err = t
		}
	}()
	app, commands := newApp(stdout, stderr, false)
	ctx, _ := app.ParseContext(args)
	if ctx == nil || ctx.SelectedCommand == nil || !hasFlag(ctx.SelectedCommand, "version") {
		app, commands = newApp(stdout, stderr, true)
	}
	selected, err = app.Parse(args)
	if err == nil {
		err = applyDefaults(app, args)
	}
	if err != nil {
		return app, selected, nil, err
	}
	for _, c := range commands {
		if c.name() == selected {
			return app, selected, c, nil
		}
	}
	return app, selected, nil, fmt.Errorf("unknown command %q", selected)
}

// terminated is kingpin ending the program (--help, --version) with a code.
type terminated struct{ code int }

func (t terminated) Error() string { return fmt.Sprintf("exit %d", t.code) }

// hasFlag reports whether cmd has its own flag called name.
func hasFlag(cmd *kingpin.CmdClause, name string) bool {
	for _, f := range cmd.Model().Flags {
		if f.Name == name {
			return true
		}
	}
	return false
}

// applyDefaults sets the defaults and environment variables of the flags
// the command line left out, when kingpin did not: kingpin stops setting
// defaults (and checking required flags) as soon as the command line holds
// a flag named "version", which `vigil verify --version v2` does.
func applyDefaults(app *kingpin.Application, args []string) error {
	ctx, err := app.ParseContext(args)
	if err != nil {
		return err
	}
	given := map[string]bool{}
	sawVersion := false
	for _, e := range ctx.Elements {
		if f, ok := e.Clause.(*kingpin.FlagClause); ok {
			name := f.Model().Name
			given[name] = true
			sawVersion = sawVersion || name == "version"
		}
	}
	if !sawVersion || ctx.SelectedCommand == nil {
		return nil
	}
	flags := append(app.Model().Flags, ctx.SelectedCommand.Model().Flags...)
	for _, f := range flags {
		if given[f.Name] {
			continue
		}
		vals := f.Default
		if f.Envar != "" {
			if v, ok := os.LookupEnv(f.Envar); ok {
				vals = []string{v}
			}
		}
		if len(vals) == 0 {
			if f.Required {
				return fmt.Errorf("required flag --%s not provided", f.Name)
			}
			continue
		}
		for _, v := range vals {
			if err := f.Value.Set(v); err != nil {
				return fmt.Errorf("--%s: %w", f.Name, err)
			}
		}
	}
	return nil
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
