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

	"github.com/vigilhq/vigil/deploy"
	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/plain"
)

// defaultServer is where the client commands find Vigil when neither
// --server nor VIGIL_SERVER says otherwise: `vigil serve`'s default address.
const defaultServer = "http://127.0.0.1:9400"

// serverFlags are how a client command reaches Vigil: --server (or
// VIGIL_SERVER) and the credentials of clientAuth.
type serverFlags struct {
	server string
	auth   clientAuth
}

func (f *serverFlags) add(cmd *kingpin.CmdClause) {
	cmd.Flag("server", "URL of the Vigil server.").Default(defaultServer).Envar("VIGIL_SERVER").StringVar(&f.server)
	f.auth.addBearerTokenFlag(cmd)
	f.auth.addHTTPConfigFlag(cmd)
}

// client is the deploy API client the flags describe.
func (f *serverFlags) client() (deploy.Client, error) {
	rt, err := f.auth.roundTripper()
	if err != nil {
		return deploy.Client{}, exitWith(exitUsage, err)
	}
	return deploy.Client{URL: f.server, HTTP: &http.Client{Transport: rt, Timeout: time.Minute}}, nil
}

// clientExit maps a client error to the exit code of the client commands:
// 1 when the server refused the request, 3 when it could not be reached
// (or failed).
func clientExit(err error) error {
	if ae, ok := deploy.IsAPIError(err); ok && ae.Code < 500 {
		return exitWith(exitFailure, err)
	}
	return exitWith(exitInternal, err)
}

func interruptible() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// deployRecordCommand is `vigil deploy record`: a pipeline tells Vigil what
// it shipped, without hand-written JSON.
type deployRecordCommand struct {
	stdout io.Writer
	flags  serverFlags
	event  deploy.Event
	output string
	start  string
}

func newDeployRecordCommand(parent *kingpin.CmdClause, stdout, _ io.Writer, withVersion bool) *deployRecordCommand {
	c := &deployRecordCommand{stdout: stdout}
	cmd := parent.Command("record", "Record a deployment: the version a pipeline just shipped and the one it replaces. Exit codes: 0 recorded, 1 refused by the server, 2 wrong command line, 3 server not reached.")
	cmd.Flag("service", "Service deployed.").Required().StringVar(&c.event.Service)
	if withVersion {
		cmd.Flag("version", "Version shipped.").Required().StringVar(&c.event.Version)
	}
	cmd.Flag("previous-version", "Version it replaces: the baseline `vigil verify` compares with.").StringVar(&c.event.PreviousVersion)
	cmd.Flag("environment", "Environment deployed to, e.g. production.").StringVar(&c.event.Environment)
	cmd.Flag("namespace", "Kubernetes namespace (or the service.namespace the service's telemetry carries).").StringVar(&c.event.Namespace)
	cmd.Flag("commit", "Commit shipped.").StringVar(&c.event.Commit)
	cmd.Flag("pipeline", "Name of the pipeline.").StringVar(&c.event.Pipeline)
	cmd.Flag("pipeline-url", "Link back to the pipeline run.").StringVar(&c.event.URL)
	cmd.Flag("strategy", "Rollout strategy: canary, rolling or bluegreen.").EnumVar(&c.event.Strategy, deploy.StrategyCanary, deploy.StrategyRolling, deploy.StrategyBlueGreen)
	cmd.Flag("started-at", "When the new version started taking traffic (RFC 3339; default: now, as the server receives the event).").PlaceHolder("2026-01-02T15:04:05Z").StringVar(&c.start)
	c.flags.add(cmd)
	cmd.Flag("output", "Output format: text or json (the recorded deployment).").Short('o').Default("text").EnumVar(&c.output, "text", "json")
	return c
}

func (*deployRecordCommand) name() string { return "deploy record" }

func (c *deployRecordCommand) run() error {
	if c.start != "" {
		t, err := time.Parse(time.RFC3339, c.start)
		if err != nil {
			return exitWith(exitUsage, fmt.Errorf("--started-at %q: want RFC 3339, e.g. 2026-01-02T15:04:05Z", c.start))
		}
		c.event.StartedAt = &t
	}
	client, err := c.flags.client()
	if err != nil {
		return err
	}
	ctx, stop := interruptible()
	defer stop()
	d, created, err := client.Record(ctx, c.event)
	if err != nil {
		return clientExit(err)
	}
	if c.output == "json" {
		return writeJSONTo(c.stdout, d)
	}
	what := "Updated"
	if created {
		what = "Recorded"
	}
	fmt.Fprintf(c.stdout, "%s %s\n", what, describeDeployment(d))
	fmt.Fprintf(c.stdout, "  id %s, started %s\n", d.ID, d.StartedAt.UTC().Format(time.RFC3339))
	if d.PreviousVersion == "" {
		fmt.Fprintf(c.stdout, "  no --previous-version: `vigil verify` will need --baseline\n")
	} else {
		fmt.Fprintf(c.stdout, "  next: vigil verify --service %s --version %s%s\n", d.Service, d.Version, envFlag(d.Environment))
	}
	return nil
}

func envFlag(env string) string {
	if env == "" {
		return ""
	}
	return " --environment " + env
}

// describeDeployment is "checkout v2 in production (replacing v1)".
func describeDeployment(d deploy.Deployment) string {
	s := d.Service + " " + d.Version
	if d.Environment != "" {
		s += " in " + d.Environment
	}
	if d.PreviousVersion != "" {
		s += " (replacing " + d.PreviousVersion + ")"
	}
	return s
}

// deployListCommand is `vigil deploy list`.
type deployListCommand struct {
	stdout io.Writer
	flags  serverFlags
	opts   deploy.ListOptions
	output string
}

func newDeployListCommand(parent *kingpin.CmdClause, stdout, _ io.Writer) *deployListCommand {
	c := &deployListCommand{stdout: stdout}
	cmd := parent.Command("list", "List recorded deployments, newest first, with the verdict of each.")
	cmd.Flag("service", "Only this service.").StringVar(&c.opts.Service)
	cmd.Flag("environment", "Only this environment.").StringVar(&c.opts.Environment)
	cmd.Flag("limit", "Most deployments listed.").Default("20").IntVar(&c.opts.Limit)
	c.flags.add(cmd)
	cmd.Flag("output", "Output format: text or json.").Short('o').Default("text").EnumVar(&c.output, "text", "json")
	return c
}

func (*deployListCommand) name() string { return "deploy list" }

// deploymentRow is a deployment with the latest verdict of its version.
type deploymentRow struct {
	deploy.Deployment
	Verdict *verdict.Verdict `json:"verdict,omitempty"`
}

func (c *deployListCommand) run() error {
	if c.opts.Limit <= 0 {
		return exitWith(exitUsage, errors.New("--limit must be positive"))
	}
	client, err := c.flags.client()
	if err != nil {
		return err
	}
	ctx, stop := interruptible()
	defer stop()
	deps, err := client.Deployments(ctx, c.opts)
	if err != nil {
		return clientExit(err)
	}
	verdicts, err := client.Verdicts(ctx, deploy.ListOptions{Service: c.opts.Service, Limit: 1000})
	if err != nil {
		return clientExit(err)
	}
	rows := make([]deploymentRow, len(deps))
	for i, d := range deps {
		rows[i] = deploymentRow{Deployment: d, Verdict: verdictOf(d, verdicts)}
	}
	if c.output == "json" {
		return writeJSONTo(c.stdout, rows)
	}
	if len(rows) == 0 {
		fmt.Fprintln(c.stdout, "No deployments recorded. Record one with `vigil deploy record --service S --version V --previous-version P`.")
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STARTED\tSERVICE\tENVIRONMENT\tVERSION\tREPLACING\tVERDICT\tID")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", plain.Ago(r.StartedAt, now), r.Service, dash(r.Environment), r.Version, dash(r.PreviousVersion), verdictCell(r.Verdict, r.Actions), r.ID)
	}
	return tw.Flush()
}

// verdictOf is the latest verdict of the deployment's version (the list is
// newest first).
func verdictOf(d deploy.Deployment, vs []verdict.Verdict) *verdict.Verdict {
	for i := range vs {
		v := &vs[i]
		if v.Service == d.Service && v.Version == d.Version && (v.Environment == d.Environment || d.Environment == "") && !v.Start.Before(d.StartedAt.Add(-time.Second)) {
			return v
		}
	}
	return nil
}

// verdictCell is "rollback (rolled back)", "running", "promote" or "-".
func verdictCell(v *verdict.Verdict, actions []deploy.ActionRecord) string {
	if v == nil {
		return "-"
	}
	s := decisionWord(v)
	for _, a := range actions {
		if a.Verdict == v.ID {
			s += " (" + actionWord(a) + ")"
			break
		}
	}
	return s + " " + v.ID
}

func decisionWord(v *verdict.Verdict) string {
	if !v.Final {
		return "running"
	}
	return string(v.Decision)
}

func actionWord(a deploy.ActionRecord) string {
	switch {
	case a.Refused != "":
		return "not acted on: " + string(a.Refused)
	case a.OK:
		return "rolled back by " + a.Kind
	default:
		return a.Kind + " rollback failed"
	}
}

// verdictsListCommand is `vigil verdicts list`.
type verdictsListCommand struct {
	stdout io.Writer
	flags  serverFlags
	opts   deploy.ListOptions
	output string
}

func newVerdictsListCommand(parent *kingpin.CmdClause, stdout, _ io.Writer) *verdictsListCommand {
	c := &verdictsListCommand{stdout: stdout}
	cmd := parent.Command("list", "List verdicts: running verifications first, then final verdicts, newest first.")
	cmd.Flag("service", "Only this service.").StringVar(&c.opts.Service)
	cmd.Flag("limit", "Most verdicts listed.").Default("20").IntVar(&c.opts.Limit)
	c.flags.add(cmd)
	cmd.Flag("output", "Output format: text or json.").Short('o').Default("text").EnumVar(&c.output, "text", "json")
	return c
}

func (*verdictsListCommand) name() string { return "verdicts list" }

func (c *verdictsListCommand) run() error {
	if c.opts.Limit <= 0 {
		return exitWith(exitUsage, errors.New("--limit must be positive"))
	}
	client, err := c.flags.client()
	if err != nil {
		return err
	}
	ctx, stop := interruptible()
	defer stop()
	vs, err := client.Verdicts(ctx, c.opts)
	if err != nil {
		return clientExit(err)
	}
	if c.output == "json" {
		if vs == nil {
			vs = []verdict.Verdict{}
		}
		return writeJSONTo(c.stdout, vs)
	}
	if len(vs) == 0 {
		fmt.Fprintln(c.stdout, "No verdicts yet. Start a verification with `vigil verify --service S --version V`.")
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "EVALUATED\tSERVICE\tENVIRONMENT\tVERSION\tBASELINE\tDECISION\tTRAFFIC\tID")
	for _, v := range vs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", plain.Ago(v.EvaluatedAt, now), v.Service, dash(v.Environment), v.Version, v.Baseline,
			decisionWord(&v), plain.Duration(time.Duration(v.TrafficSeconds*float64(time.Second))), v.ID)
	}
	return tw.Flush()
}

// verdictsShowCommand is `vigil verdicts show ID`.
type verdictsShowCommand struct {
	stdout  io.Writer
	flags   serverFlags
	id      string
	explain bool
	output  string
}

func newVerdictsShowCommand(parent *kingpin.CmdClause, stdout, _ io.Writer) *verdictsShowCommand {
	c := &verdictsShowCommand{stdout: stdout}
	cmd := parent.Command("show", "Show a verdict with its evidence; --explain adds how each signal was judged.")
	cmd.Arg("id", "Verdict ID (from `vigil verdicts list` or `vigil verify -o json`).").Required().StringVar(&c.id)
	cmd.Flag("explain", "Explain each signal: the test, its numbers, the queries.").BoolVar(&c.explain)
	c.flags.add(cmd)
	cmd.Flag("output", "Output format: text or json.").Short('o').Default("text").EnumVar(&c.output, "text", "json")
	return c
}

func (*verdictsShowCommand) name() string { return "verdicts show" }

func (c *verdictsShowCommand) run() error {
	client, err := c.flags.client()
	if err != nil {
		return err
	}
	ctx, stop := interruptible()
	defer stop()
	v, err := client.Verdict(ctx, strings.TrimSpace(c.id))
	if err != nil {
		return clientExit(err)
	}
	if c.output == "json" {
		return writeJSONTo(c.stdout, v)
	}
	r := report{server: c.flags.server, explain: c.explain}
	r.write(c.stdout, &v, false)
	return nil
}
