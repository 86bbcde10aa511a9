package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/model"

	"github.com/vigilhq/vigil/query"
)

type queryCommand struct {
	stdout, stderr io.Writer

	server  string
	expr    string
	at      string
	start   string
	end     string
	step    model.Duration
	rng     model.Duration
	timeout model.Duration
	output  string

	isRange bool
	term    terminal
	auth    clientAuth
}

func newQueryCommand(app *kingpin.Application, stdout, stderr io.Writer) *queryCommand {
	c := &queryCommand{stdout: stdout, stderr: stderr}
	cmd := app.Command("query", "Run a PromQL query against a Vigil (or any Prometheus API). Range queries are drawn as a chart on a terminal.")
	cmd.Flag("server", "URL of the server to query.").Default("http://127.0.0.1:9400").Envar("VIGIL_SERVER").StringVar(&c.server)
	cmd.Flag("time", "Evaluation time of an instant query: RFC 3339, Unix seconds, 'now' or relative like -5m.").StringVar(&c.at)
	cmd.Flag("start", "Start of a range query (same formats as --time). Makes the query a range query.").StringVar(&c.start)
	cmd.Flag("end", "End of a range query (default now).").StringVar(&c.end)
	cmd.Flag("step", "Resolution of a range query, e.g. 15s (default: range/120, at least 1s).").SetValue(&c.step)
	cmd.Flag("range", "Length of a range query ending at --end, e.g. 1h or 2d (instead of --start).").SetValue(&c.rng)
	cmd.Flag("timeout", "Server-side evaluation timeout, e.g. 30s.").SetValue(&c.timeout)
	cmd.Flag("output", "Output format: table (a chart too for range queries on a terminal) or json.").Short('o').Default("table").EnumVar(&c.output, "table", "json")
	c.auth.addHTTPConfigFlag(cmd)
	c.auth.addBearerTokenFlag(cmd)
	cmd.Arg("expr", "PromQL expression.").Required().StringVar(&c.expr)
	cmd.PreAction(func(*kingpin.ParseContext) error {
		c.isRange = c.start != "" || c.end != "" || c.step != 0 || c.rng != 0
		return nil
	})
	return c
}

func (*queryCommand) name() string { return "query" }

func (c *queryCommand) run() error {
	c.term = detectTerminal(c.stdout)
	rt, err := c.auth.roundTripper()
	if err != nil {
		return exitWith(exitUsage, err)
	}
	client, err := query.NewClient(c.server, rt)
	if err != nil {
		return exitWith(exitUsage, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	now := time.Now()

	var (
		res              query.Result
		start, end, tEnd time.Time
		step             time.Duration
	)
	if c.isRange {
		if end, err = parseCLITime(c.end, now); err != nil {
			return exitWith(exitUsage, fmt.Errorf("--end: %w", err))
		}
		switch {
		case c.start != "":
			if start, err = parseCLITime(c.start, now); err != nil {
				return exitWith(exitUsage, fmt.Errorf("--start: %w", err))
			}
		case c.rng > 0:
			start = end.Add(-time.Duration(c.rng))
		default:
			start = end.Add(-time.Hour)
		}
		if !start.Before(end) {
			return exitWith(exitUsage, errors.New("--start must be before --end"))
		}
		step = time.Duration(c.step)
		if step == 0 {
			step = max(time.Second, end.Sub(start)/120).Round(time.Second)
		}
		res, err = client.Range(ctx, c.expr, start, end, step, time.Duration(c.timeout))
		tEnd = end
	} else {
		ts, perr := parseCLITime(c.at, now)
		if perr != nil {
			return exitWith(exitUsage, fmt.Errorf("--time: %w", perr))
		}
		res, err = client.Instant(ctx, c.expr, ts, time.Duration(c.timeout))
		tEnd = ts
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(c.stderr, "warning: %s\n", w)
	}
	if err != nil {
		if query.Rejected(err) {
			return exitWith(exitFailure, err)
		}
		return exitWith(exitInternal, fmt.Errorf("query %s: %w", c.server, err))
	}

	if c.output == "json" {
		return writeJSONResult(c.stdout, res)
	}
	switch v := res.Value.(type) {
	case model.Vector:
		renderVector(c.stdout, v, c.term)
	case model.Matrix:
		renderMatrix(c.stdout, v, start, tEnd, step, c.term)
	case *model.Scalar:
		fmt.Fprintln(c.stdout, formatValue(float64(v.Value)))
	case *model.String:
		fmt.Fprintln(c.stdout, v.Value)
	}
	return nil
}

func writeJSONResult(w io.Writer, res query.Result) error {
	out := struct {
		ResultType string      `json:"resultType"`
		Result     model.Value `json:"result"`
		Warnings   []string    `json:"warnings,omitempty"`
	}{ResultType: res.Value.Type().String(), Result: res.Value, Warnings: res.Warnings}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return exitWith(exitInternal, err)
	}
	return nil
}

// parseCLITime accepts "", "now", RFC 3339, Unix seconds, a duration
// relative to now ("-15m", "now-15m").
func parseCLITime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "" || s == "now":
		return now, nil
	case strings.HasPrefix(s, "now-") || strings.HasPrefix(s, "-"):
		d, err := model.ParseDuration(strings.TrimPrefix(strings.TrimPrefix(s, "now"), "-"))
		if err != nil {
			return time.Time{}, fmt.Errorf("cannot parse relative time %q: %w", s, err)
		}
		return now.Add(-time.Duration(d)), nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q as a time: use RFC 3339, Unix seconds, 'now' or -<duration>", s)
}
