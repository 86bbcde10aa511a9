package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"
	promconfig "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage/remote"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/deploy"
	"github.com/vigilhq/vigil/deploy/verdict"
	"github.com/vigilhq/vigil/internal/config"
	"github.com/vigilhq/vigil/query"
)

type backtestCommand struct {
	stdout, stderr io.Writer

	server, service, environment string
	from, to                     string
	rollbackWithin               model.Duration
	policies                     []string
	labels                       string
	output                       string
	auth                         clientAuth

	remoteRead, deployments, config string
}

func newBacktestCommand(app *kingpin.Application, stdout, stderr io.Writer) *backtestCommand {
	c := &backtestCommand{stdout: stdout, stderr: stderr}
	cmd := app.Command("backtest", "Replay the recorded deployments of a time range through the verdict engine over the data already stored, "+
		"and compare each verdict with what happened next (a human rollback, a critical alert, or your labels): precision, recall, "+
		"false rollbacks and time to decision, per service and overall. Run by the server (read scope), or here over a remote_read source.")
	cmd.Flag("server", "URL of the Vigil server.").Default(defaultServer).Envar("VIGIL_SERVER").StringVar(&c.server)
	cmd.Flag("service", "Only this service's deployments.").StringVar(&c.service)
	cmd.Flag("environment", "Only this environment's deployments.").StringVar(&c.environment)
	cmd.Flag("from", "Replay deployments started from this time: RFC 3339, or a duration ago such as 30d.").Default("30d").StringVar(&c.from)
	cmd.Flag("to", "Replay deployments started before this time: RFC 3339, or a duration ago (default: now).").StringVar(&c.to)
	cmd.Flag("rollback-within", "A deployment of the previous version within this long after a deployment is a human rollback of it; a critical alert within it makes it bad too.").
		Default("60m").SetValue(&c.rollbackWithin)
	cmd.Flag("policy", "A policy file (YAML: policy, signals and window, as under deploy:) to replay with instead of the server's; repeat it to compare policies side by side.").
		PlaceHolder("FILE").StringsVar(&c.policies)
	cmd.Flag("labels", "A CSV of your own truth: id,label or service,version,start,label lines, label good or bad.").PlaceHolder("FILE").StringVar(&c.labels)
	cmd.Flag("output", "Output format: table or json.").Short('o').Default("table").EnumVar(&c.output, "table", "json")
	c.auth.addBearerTokenFlag(cmd)
	c.auth.addHTTPConfigFlag(cmd)
	cmd.Flag("remote-read", "Replay here over this Prometheus remote_read endpoint (e.g. http://prometheus:9090/api/v1/read) rather than on the server.").
		PlaceHolder("URL").StringVar(&c.remoteRead)
	cmd.Flag("deployments", "With --remote-read: the deployments, as GET /api/v1/deployments answers or the server's deployments.jsonl (default: listed from --server).").
		PlaceHolder("FILE").StringVar(&c.deployments)
	cmd.Flag("config.file", "With --remote-read: the Vigil configuration whose deploy: section (step, window, policy, signals, catalog) the replay uses (default: the defaults).").
		PlaceHolder("vigil.yml").StringVar(&c.config)
	return c
}

func (*backtestCommand) name() string { return "backtest" }

// backtestTime reads an RFC 3339 time, Unix seconds, or a duration ago.
func backtestTime(s string, now time.Time) (time.Time, error) {
	if d, err := model.ParseDuration(s); err == nil {
		return now.Add(-time.Duration(d)), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration such as 30d", s)
}

func (c *backtestCommand) run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	now := time.Now()
	q := deploy.BacktestQuery{Service: c.service, Environment: c.environment, RollbackWithin: time.Duration(c.rollbackWithin), Policies: map[string][]byte{}}
	var err error
	q.To = now
	if c.to != "" {
		if q.To, err = backtestTime(c.to, now); err != nil {
			return exitWith(exitUsage, fmt.Errorf("--to: %w", err))
		}
	}
	if q.From, err = backtestTime(c.from, now); err != nil {
		return exitWith(exitUsage, fmt.Errorf("--from: %w", err))
	}
	for _, p := range c.policies {
		b, err := os.ReadFile(p)
		if err != nil {
			return exitWith(exitUsage, fmt.Errorf("--policy: %w", err))
		}
		name := deploy.PolicyName(p)
		if _, dup := q.Policies[name]; dup {
			return exitWith(exitUsage, fmt.Errorf("--policy: two policies named %s", name))
		}
		q.Policies[name] = b
		q.PolicyOrder = append(q.PolicyOrder, name)
	}
	if c.labels != "" {
		if q.Labels, err = os.ReadFile(c.labels); err != nil {
			return exitWith(exitUsage, fmt.Errorf("--labels: %w", err))
		}
		if _, err := deploy.ParseTruthLabels(bytes.NewReader(q.Labels)); err != nil {
			return exitWith(exitUsage, fmt.Errorf("--labels %s: %w", c.labels, err))
		}
	}
	rt, err := c.auth.roundTripper()
	if err != nil {
		return exitWith(exitUsage, err)
	}
	client := deploy.Client{URL: c.server, HTTP: &http.Client{Transport: rt}}
	var rep deploy.BacktestReport
	if c.remoteRead != "" {
		rep, err = c.local(ctx, client, q, now)
	} else {
		rep, err = client.Backtest(ctx, q)
	}
	if err != nil {
		return exitWith(exitInternal, err)
	}
	if c.output == "json" {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	renderBacktest(c.stdout, rep)
	return nil
}

// local replays here over the remote_read source.
func (c *backtestCommand) local(ctx context.Context, client deploy.Client, q deploy.BacktestQuery, now time.Time) (deploy.BacktestReport, error) {
	cfg := config.DefaultConfig()
	if c.config != "" {
		var err error
		if cfg, err = config.LoadFile(c.config); err != nil {
			return deploy.BacktestReport{}, err
		}
	}
	dcfg := cfg.DeployConfig()
	var cat *catalog.Catalog
	if dcfg.Catalog != "" {
		var err error
		if cat, err = catalog.Load(dcfg.Catalog); err != nil {
			return deploy.BacktestReport{}, err
		}
	}
	u, err := url.Parse(c.remoteRead)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return deploy.BacktestReport{}, fmt.Errorf("--remote-read %q: not an http(s) URL", c.remoteRead)
	}
	hc := promconfig.DefaultHTTPClientConfig
	if c.auth.httpConfigFile != "" {
		loaded, _, err := promconfig.LoadHTTPConfigFile(c.auth.httpConfigFile)
		if err != nil {
			return deploy.BacktestReport{}, fmt.Errorf("--http.config.file: %w", err)
		}
		hc = *loaded
	}
	rc, err := remote.NewReadClient("backtest", &remote.ClientConfig{URL: &promconfig.URL{URL: u}, Timeout: model.Duration(time.Minute), HTTPClientConfig: hc,
		ChunkedReadLimit: 50e6}) // Prometheus's remote_read default
	if err != nil {
		return deploy.BacktestReport{}, fmt.Errorf("remote read %s: %w", c.remoteRead, err)
	}
	eng, err := query.NewEngine(cfg.Query, "", nil, nil)
	if err != nil {
		return deploy.BacktestReport{}, err
	}
	querier := deploy.PromQL{Engine: eng, Queryable: remote.NewSampleAndChunkQueryableClient(rc, labels.EmptyLabels(), nil, true, nil)}
	var deps []deploy.Deployment
	if c.deployments != "" {
		if deps, err = readDeployments(c.deployments); err != nil {
			return deploy.BacktestReport{}, err
		}
	} else if deps, err = client.Deployments(ctx, deploy.ListOptions{Limit: dcfg.MaxDeployments}); err != nil {
		return deploy.BacktestReport{}, fmt.Errorf("list the deployments (or give --deployments): %w", err)
	}
	current := deploy.BacktestPolicy{Name: "current", Window: dcfg.Window, Policy: dcfg.Policy, Signals: dcfg.Signals}
	opts := deploy.BacktestOptions{From: q.From, To: q.To, Service: q.Service, Environment: q.Environment, RollbackWithin: q.RollbackWithin, Now: now}
	for _, name := range q.PolicyOrder {
		p, err := deploy.ParseBacktestPolicy(name, q.Policies[name], current)
		if err != nil {
			return deploy.BacktestReport{}, err
		}
		opts.Policies = append(opts.Policies, p)
	}
	if len(opts.Policies) == 0 {
		opts.Policies = []deploy.BacktestPolicy{current}
	}
	if len(q.Labels) > 0 {
		if opts.Labels, err = deploy.ParseTruthLabels(bytes.NewReader(q.Labels)); err != nil {
			return deploy.BacktestReport{}, err
		}
	}
	b := deploy.Backtester{Querier: querier, Catalog: cat, Step: time.Duration(dcfg.Step), RateWindow: time.Duration(dcfg.RateWindow)}
	return b.Run(ctx, deps, opts)
}

// readDeployments reads deployments as GET /api/v1/deployments answers
// (the envelope or its data array) or as the deployments.jsonl file.
func readDeployments(path string) ([]deploy.Deployment, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--deployments: %w", err)
	}
	trimmed := bytes.TrimSpace(b)
	switch {
	case bytes.HasPrefix(trimmed, []byte("[")):
		var out []deploy.Deployment
		if err := json.Unmarshal(trimmed, &out); err != nil {
			return nil, fmt.Errorf("--deployments %s: %w", path, err)
		}
		return out, nil
	}
	var env struct {
		Status string
		Data   []deploy.Deployment
	}
	if err := json.Unmarshal(trimmed, &env); err == nil && env.Status != "" {
		return env.Data, nil // the API's envelope
	}
	// The store's JSON lines: the last line of a deployment wins.
	byID := map[string]int{}
	var out []deploy.Deployment
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		var l struct {
			Deployment *deploy.Deployment `json:"deployment"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("--deployments %s line %d: %w", path, n, err)
		}
		if d := l.Deployment; d != nil {
			if i, ok := byID[d.ID]; ok {
				out[i] = *d
			} else {
				byID[d.ID] = len(out)
				out = append(out, *d)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--deployments %s: no deployment in it", path)
	}
	return out, sc.Err()
}

// renderBacktest prints a backtest for people: each deployment with what
// every policy decided and what happened, then the scores.
func renderBacktest(w io.Writer, rep deploy.BacktestReport) {
	var names []string
	for _, p := range rep.Policies {
		names = append(names, p.Name)
	}
	fmt.Fprintf(w, "Backtest of %d deployments started %s to %s; policies: %s; a rollback within %s of a deployment, or a critical alert, makes it bad.\n\n",
		len(rep.Deployments), rep.From.Format(time.RFC3339), rep.To.Format(time.RFC3339), strings.Join(names, ", "),
		model.Duration(time.Duration(rep.RollbackWithinSeconds)*time.Second))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := "START\tSERVICE\tVERSION\tBASELINE\tWHAT HAPPENED"
	for _, n := range names {
		head += "\t" + strings.ToUpper(n)
	}
	fmt.Fprintln(tw, head)
	for _, d := range rep.Deployments {
		truth := d.Truth.Label
		if d.Truth.Source != deploy.TruthFromNothing {
			truth += " (" + d.Truth.Source + ")"
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s", d.Start.Format(time.RFC3339), serviceEnv(d.Service, d.Environment), d.Version, dash(d.Baseline), truth)
		for _, r := range d.Results {
			line += "\t" + resultCell(r, d.Truth.Label)
		}
		fmt.Fprintln(tw, line)
	}
	_ = tw.Flush()
	for _, s := range rep.Skipped {
		fmt.Fprintf(w, "skipped %s %s (%s): %s\n", s.Service, s.Version, s.ID, s.Reason)
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tPOLICY\tDEPLOYS\tBAD\tROLLBACKS\tPRECISION\tRECALL\tFALSE ROLLBACKS\tINCONCLUSIVE\tMEDIAN\tP95")
	row := func(service, policy string, s deploy.Scores) {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%d\t%s\t%s\n", service, policy, s.Deployments, s.Bad, s.Rollbacks,
			share(s.Precision), share(s.Recall), share(s.FalseRollbackRate), s.Inconclusive, secs(s.MedianSeconds), secs(s.P95Seconds))
	}
	services := map[string]bool{}
	var order []string
	for _, d := range rep.Deployments {
		if !services[d.Service] {
			services[d.Service] = true
			order = append(order, d.Service)
		}
	}
	for _, svc := range slices.Sorted(slices.Values(order)) {
		for _, ps := range rep.Scores {
			row(svc, ps.Policy, ps.Services[svc])
		}
	}
	for _, ps := range rep.Scores {
		row("all", ps.Policy, ps.Overall)
	}
	_ = tw.Flush()
}

func serviceEnv(service, env string) string {
	if env == "" {
		return service
	}
	return service + "/" + env
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// resultCell is a policy's verdict on a deployment, marked when it
// disagrees with the truth.
func resultCell(r deploy.BacktestResult, truth string) string {
	if r.Error != "" {
		return "error"
	}
	s := string(r.Decision)
	if r.Final {
		s += " " + model.Duration(time.Duration(r.Seconds)*time.Second).String()
	} else {
		s += " (unfinished)"
	}
	if len(r.Failing) > 0 {
		s += ": " + strings.Join(r.Failing, ",")
	}
	switch {
	case r.Decision == verdict.Rollback && truth == deploy.TruthGood:
		s += " [false rollback]"
	case r.Decision != verdict.Rollback && truth == deploy.TruthBad:
		s += " [missed]"
	}
	return s
}

func share(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100**p)
}

func secs(p *float64) string {
	if p == nil {
		return "-"
	}
	return model.Duration(time.Duration(*p) * time.Second).String()
}
