package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/model"

	"github.com/vigilhq/vigil/deploy"
	"github.com/vigilhq/vigil/deploy/verdict"
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

	server, service, version, baseline, environment string
	window, wait, interval                          model.Duration
	output                                          string
	auth                                            clientAuth
}

// newVerifyCommand registers `vigil verify`. Its --version flag clashes with
// the global one, so it exists only when verify is the command being run
// (withVersion).
func newVerifyCommand(app *kingpin.Application, stdout, stderr io.Writer, withVersion bool) *verifyCommand {
	c := &verifyCommand{stdout: stdout, stderr: stderr}
	cmd := app.Command("verify", "Verify a deployment: poll Vigil until it decides promote or rollback. Exit codes: 0 promote, 1 rollback, 2 inconclusive when --wait runs out, 3 error.")
	cmd.Flag("server", "URL of the Vigil server.").Default("http://127.0.0.1:9400").Envar("VIGIL_SERVER").StringVar(&c.server)
	cmd.Flag("service", "Service to verify.").Required().StringVar(&c.service)
	if withVersion {
		cmd.Flag("version", "Version just shipped.").Required().StringVar(&c.version)
	}
	cmd.Flag("baseline", "Version to compare with (default: the previousVersion of the recorded deployment).").StringVar(&c.baseline)
	cmd.Flag("environment", "Environment of the deployment.").StringVar(&c.environment)
	cmd.Flag("window", "Most traffic time analysed before a final decision (default: the server's deploy.window).").SetValue(&c.window)
	cmd.Flag("wait", "How long to wait for a decision before giving up as inconclusive (longer than the window).").Default("15m").SetValue(&c.wait)
	cmd.Flag("poll-interval", "How often to ask for the verdict.").Default("5s").Hidden().SetValue(&c.interval)
	c.auth.addBearerTokenFlag(cmd)
	c.auth.addHTTPConfigFlag(cmd)
	cmd.Flag("output", "Output format: text or json (the final verdict).").Short('o').Default("text").EnumVar(&c.output, "text", "json")
	return c
}

func (*verifyCommand) name() string { return "verify" }

func (c *verifyCommand) run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	term := detectTerminal(c.stderr)
	rt, err := c.auth.roundTripper()
	if err != nil {
		return exitWith(verifyError, err)
	}
	req := deploy.VerifyRequest{Service: c.service, Version: c.version, Baseline: c.baseline, Environment: c.environment}
	if c.window > 0 {
		req.Window = c.window.String()
	}
	client := deploy.Client{URL: c.server, HTTP: &http.Client{Transport: rt}}
	deadline := time.Now().Add(time.Duration(c.wait))
	first, err := client.Verify(ctx, req)
	if err != nil {
		return exitWith(verifyError, err)
	}
	r := first
	for {
		if r.Error != "" {
			fmt.Fprintf(c.stderr, "evaluation failed: %s\n", r.Error)
		} else if v := r.Verdict; v != nil && !r.Final {
			c.progress(term, v)
		}
		if r.Final || !time.Now().Before(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return exitWith(verifyError, errors.New("interrupted"))
		case <-time.After(time.Duration(c.interval)):
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
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return exitWith(verifyError, err)
		}
	} else {
		renderVerdict(c.stdout, v, !r.Final)
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

// progress shows where the analysis is: rewritten in place on a terminal,
// one line per poll otherwise.
func (c *verifyCommand) progress(t terminal, v *verdict.Verdict) {
	line := fmt.Sprintf("%s %s vs %s: %.0fs of %.0fs traffic analysed, %s", v.Service, v.Version, v.Baseline, v.TrafficSeconds, v.WindowSeconds, v.Reason)
	if v.NeedSecs > 0 {
		line += fmt.Sprintf(" (needs about %.0fs more)", v.NeedSecs)
	}
	if t.tty {
		fmt.Fprintf(c.stderr, "\r\033[K%s", truncate(line, max(t.width-1, 20)))
		return
	}
	fmt.Fprintln(c.stderr, line)
}

// renderVerdict prints the verdict as a person reads it.
func renderVerdict(w io.Writer, v *verdict.Verdict, timedOut bool) {
	decision := strings.ToUpper(string(v.Decision))
	if timedOut {
		decision += " (gave up waiting)"
	}
	env := ""
	if v.Environment != "" {
		env = " in " + v.Environment
	}
	fmt.Fprintf(w, "%s %s%s: %s (score %.2f)\n", v.Service, v.Version, env, decision, v.Score)
	fmt.Fprintf(w, "  %s\n", v.Reason)
	fmt.Fprintf(w, "  baseline %s (%s), %.0fs of traffic analysed of a %.0fs window\n", v.Baseline, v.BaselineMode, v.TrafficSeconds, v.WindowSeconds)
	if v.NeedSecs > 0 {
		fmt.Fprintf(w, "  needs about %.0fs more traffic\n", v.NeedSecs)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SIGNAL\tSTATUS\tBASELINE\tCANARY\tEFFECT\tP-VALUE\tWHY")
	for _, s := range v.Signals {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Status, num(s.Baseline), num(s.Canary), pct(s.EffectSize), num(s.PValue), s.Reason)
	}
	_ = tw.Flush()
	if len(v.ErrorLogs) > 0 {
		fmt.Fprintf(w, "\nTop error logs of %s:\n", v.Version)
		for _, l := range v.ErrorLogs {
			mark := ""
			if l.New {
				mark = " [new]"
			}
			trace := ""
			if l.TraceID != "" {
				trace = "  trace " + l.TraceID
			}
			fmt.Fprintf(w, "  %4d× %s%s%s\n", l.Count, truncate(l.Body, 100), mark, trace)
		}
	}
	if len(v.ErrorTraces) > 0 {
		fmt.Fprintf(w, "\nExample error traces of %s:\n", v.Version)
		for _, tr := range v.ErrorTraces {
			fmt.Fprintf(w, "  %s  %s  %s\n", tr.TraceID, tr.Span, tr.Message)
		}
	}
	fmt.Fprintln(w, "\nPromQL of the new version's signals (links to query_range in -o json):")
	for _, s := range v.Signals {
		fmt.Fprintf(w, "  %s: %s\n", s.Name, s.Query)
	}
}

func num(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.4g", *p)
}

func pct(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%+.0f%%", 100**p)
}
