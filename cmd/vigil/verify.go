package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/model"

	"github.com/vigilhq/vigil/deploy"
	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/plain"
)

// Exit codes of `vigil verify`, for pipelines.
const (
	verifyPromote      = 0
	verifyRollback     = 1
	verifyInconclusive = 2
	verifyError        = 3
)

type verifyCommand struct {
	stdout, stderr io.Writer

	flags                                   serverFlags
	service, version, baseline, environment string
	window, wait, interval                  model.Duration
	output                                  string
}

// minPollInterval is the shortest --poll-interval: a verification is
// re-evaluated at most every half step anyway.
const minPollInterval = 250 * time.Millisecond

// newVerifyCommand registers `vigil verify`. Its --version flag clashes with
// the global one, so it exists only when verify is the command being run
// (withVersion).
func newVerifyCommand(app *kingpin.Application, stdout, stderr io.Writer, withVersion bool) *verifyCommand {
	c := &verifyCommand{stdout: stdout, stderr: stderr}
	cmd := app.Command("verify", "Verify a deployment: poll Vigil until it decides promote or rollback, printing a progress line each poll (in place on a terminal). Exit codes: 0 promote, 1 rollback, 2 inconclusive when --wait runs out, 3 error.")
	cmd.Flag("server", "URL of the Vigil server.").Default(defaultServer).Envar("VIGIL_SERVER").StringVar(&c.flags.server)
	cmd.Flag("service", "Service to verify.").Required().StringVar(&c.service)
	if withVersion {
		cmd.Flag("version", "Version just shipped.").Required().StringVar(&c.version)
	}
	cmd.Flag("baseline", "Version to compare with (default: the previousVersion of the recorded deployment).").StringVar(&c.baseline)
	cmd.Flag("environment", "Environment of the deployment.").StringVar(&c.environment)
	cmd.Flag("window", "Most traffic time analysed before a final decision (default: the server's deploy.window).").SetValue(&c.window)
	cmd.Flag("wait", "How long to wait for a decision before giving up as inconclusive (longer than the window).").Default("15m").SetValue(&c.wait)
	cmd.Flag("poll-interval", "How often to ask for the verdict (at least 250ms).").Default("5s").SetValue(&c.interval)
	c.flags.auth.addBearerTokenFlag(cmd)
	c.flags.auth.addHTTPConfigFlag(cmd)
	cmd.Flag("output", "Output format: text or json (the final verdict).").Short('o').Default("text").EnumVar(&c.output, "text", "json")
	return c
}

func (*verifyCommand) name() string { return "verify" }

func (c *verifyCommand) run() error {
	if time.Duration(c.interval) < minPollInterval {
		return exitWith(verifyError, fmt.Errorf("--poll-interval %s: at least %s", c.interval, model.Duration(minPollInterval)))
	}
	if c.wait <= 0 {
		return exitWith(verifyError, fmt.Errorf("--wait %s: must be positive", c.wait))
	}
	ctx, stop := interruptible()
	defer stop()
	term := detectTerminal(c.stderr)
	client, err := c.flags.client()
	if err != nil {
		return exitWith(verifyError, err)
	}
	client.HTTP.Timeout = 0 // each call is bounded by ctx and the server
	req := deploy.VerifyRequest{Service: c.service, Version: c.version, Baseline: c.baseline, Environment: c.environment}
	if c.window > 0 {
		req.Window = c.window.String()
	}
	deadline := time.Now().Add(time.Duration(c.wait))
	first, err := client.Verify(ctx, req)
	if err != nil {
		return exitWith(verifyError, err)
	}
	r := first
	var last string // the last progress line printed
	for {
		if r.Error != "" {
			fmt.Fprintf(c.stderr, "evaluation failed: %s\n", r.Error)
		} else if v := r.Verdict; v != nil && !r.Final {
			last = c.progress(term, v, last)
		}
		if r.Final || !time.Now().Before(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return exitWith(verifyError, errors.New("interrupted"))
		case <-time.After(min(time.Duration(c.interval), time.Until(deadline)+time.Millisecond)):
		}
		if r, err = client.Status(ctx, first.ID); err != nil {
			return exitWith(verifyError, err)
		}
	}
	if term.tty {
		fmt.Fprint(c.stderr, "\r\033[K")
	}
	v := r.Verdict
	if v == nil {
		return exitWith(verifyError, errors.New("the server returned no verdict"))
	}
	if c.output == "json" {
		if err := writeJSONTo(c.stdout, v); err != nil {
			return exitWith(verifyError, err)
		}
	} else {
		report{server: c.flags.server}.write(c.stdout, v, !r.Final)
	}
	switch {
	case !r.Final && r.Error != "":
		return exitWith(verifyError, fmt.Errorf("no decision within --wait %s: %s", c.wait, r.Error))
	case !r.Final:
		return exitWith(verifyInconclusive, fmt.Errorf("no decision within --wait %s", c.wait))
	case v.Decision == verdict.Promote:
		return nil
	case v.Decision == verdict.Rollback:
		return exitWith(verifyRollback, nil)
	case v.Decision == verdict.Error:
		return exitWith(verifyError, errors.New("verification failed: "+v.Reason))
	default:
		return exitWith(verifyInconclusive, errors.New("inconclusive: "+v.Reason))
	}
}

// progress shows where the analysis is: rewritten in place on a terminal;
// otherwise (CI logs) one line per poll that brings news — the verdict is
// re-evaluated once a step, so a poll between two steps prints nothing.
// It returns the line shown.
func (c *verifyCommand) progress(t terminal, v *verdict.Verdict, last string) string {
	line := plain.Progress(v)
	switch {
	case t.tty:
		fmt.Fprintf(c.stderr, "\r\033[K%s", truncate(line, max(t.width-1, 20)))
	case line != last:
		fmt.Fprintln(c.stderr, line)
	}
	return line
}
