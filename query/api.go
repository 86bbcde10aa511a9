package query

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	jsoniter "github.com/json-iterator/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/index"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/prometheus/prometheus/util/stats"

	"github.com/vigilhq/vigil/internal/auth"
)

// Storage is what the API reads.
type Storage interface {
	storage.Queryable
	storage.ExemplarQueryable
}

// MetadataSource answers /api/v1/metadata.
type MetadataSource interface {
	Get(family string, limit, limitPerMetric int) map[string][]metadata.Metadata
}

// TSDBStatus answers /api/v1/status/tsdb.
type TSDBStatus interface {
	HeadStats(statsByLabelName string, limit int) *tsdb.Stats
}

// BuildInfo is what /api/v1/status/buildinfo reports.
type BuildInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	Branch    string `json:"branch"`
	BuildUser string `json:"buildUser"`
	BuildDate string `json:"buildDate"`
	GoVersion string `json:"goVersion"`
}

// APIConfig wires the API to the engine and storage.
type APIConfig struct {
	Engine   *Engine
	Storage  Storage
	Metadata MetadataSource // optional
	TSDB     TSDBStatus     // optional
	// Build is reported by /api/v1/status/buildinfo.
	Build BuildInfo
	// Flags and Config are reported by /api/v1/status/flags and /config.
	Flags  map[string]string
	Config func() string
	// Retention is reported by /api/v1/status/runtimeinfo.
	Retention string
	Logger    *slog.Logger
}

// Validate reports a missing dependency.
func (c APIConfig) Validate() error {
	if c.Engine == nil || c.Storage == nil {
		return errors.New("query API: engine and storage are required")
	}
	return nil
}

// API serves the Prometheus HTTP API.
type API struct {
	cfg       APIConfig
	logger    *slog.Logger
	startTime time.Time
	now       func() time.Time
}

// NewAPI builds the API.
func NewAPI(cfg APIConfig) (*API, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &API{cfg: cfg, logger: cfg.Logger, startTime: time.Now(), now: time.Now}, nil
}

// Mux is where handlers are registered, each with the scope it needs
// (*auth.Mux).
type Mux interface {
	Handle(pattern string, scope auth.Scope, h http.Handler, opts ...auth.RouteOption)
}

// Register adds the API's routes. Query endpoints accept GET and POST (form
// encoded), as Grafana's Prometheus datasource expects. Everything is for
// the read scope but the configuration, which is admin's.
func (a *API) Register(mux Mux) {
	both := func(path string, f apiFunc) {
		mux.Handle("GET "+path, auth.ScopeRead, a.wrap(f))
		mux.Handle("POST "+path, auth.ScopeRead, a.wrap(f))
	}
	get := func(path string, f apiFunc) { mux.Handle("GET "+path, auth.ScopeRead, a.wrap(f)) }

	both("/api/v1/query", a.query)
	both("/api/v1/query_range", a.queryRange)
	both("/api/v1/query_exemplars", a.queryExemplars)
	both("/api/v1/format_query", a.formatQuery)
	both("/api/v1/series", a.series)
	both("/api/v1/labels", a.labelNames)
	get("/api/v1/label/{name}/values", a.labelValues)
	get("/api/v1/metadata", a.metadata)
	get("/api/v1/status/buildinfo", a.buildInfo)
	get("/api/v1/status/runtimeinfo", a.runtimeInfo)
	get("/api/v1/status/flags", a.flags)
	mux.Handle("GET /api/v1/status/config", auth.ScopeAdmin, a.wrap(a.config))
	get("/api/v1/status/tsdb", a.tsdbStatus)
}

// result is what an endpoint returns: data to encode, or an error.
type result struct {
	data     func(*jsoniter.Stream)
	err      *apiError
	warnings annotations.Annotations
	query    string
	close    func()
}

type apiFunc func(r *http.Request) result

// MaxPointsPerSeries is the most points a range query may return per
// series, as in Prometheus: (end-start)/step beyond it is refused.
const MaxPointsPerSeries = 11000

type errorType string

const (
	errBadData     errorType = "bad_data"
	errExec        errorType = "execution"
	errTimeout     errorType = "timeout"
	errCanceled    errorType = "canceled"
	errInternal    errorType = "internal"
	errUnavailable errorType = "unavailable"
	errNotFound    errorType = "not_found"
)

type apiError struct {
	typ errorType
	err error
}

func (e *apiError) status() int {
	switch e.typ {
	case errBadData:
		return http.StatusBadRequest
	case errExec:
		return http.StatusUnprocessableEntity
	case errCanceled:
		return 499 // client closed request, as Prometheus answers
	case errTimeout:
		return http.StatusServiceUnavailable
	case errUnavailable:
		return http.StatusServiceUnavailable
	case errNotFound:
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

func badData(err error) result { return result{err: &apiError{errBadData, err}} }

func (a *API) wrap(f apiFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			writeError(w, &apiError{errBadData, fmt.Errorf("error parsing form values: %w", err)})
			return
		}
		res := f(r)
		if res.close != nil {
			defer res.close()
		}
		if res.err != nil {
			if res.err.typ == errInternal || res.err.typ == errExec {
				a.logger.Debug("Query API error", "path", r.URL.Path, "err", res.err.err)
			}
			writeError(w, res.err)
			return
		}
		warnings, infos := res.warnings.AsStrings(res.query, 10, 10)
		writeSuccess(w, warnings, infos, res.data)
	})
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status())
	s := jsonAPI.BorrowStream(w)
	defer jsonAPI.ReturnStream(s)
	s.WriteObjectStart()
	s.WriteObjectField("status")
	s.WriteString("error")
	s.WriteMore()
	s.WriteObjectField("errorType")
	s.WriteString(string(e.typ))
	s.WriteMore()
	s.WriteObjectField("error")
	s.WriteString(e.err.Error())
	s.WriteObjectEnd()
	s.WriteRaw("\n")
	_ = s.Flush()
}

// execError maps an engine error to the API error Prometheus gives for it.
func execError(err error) *apiError {
	var (
		canceled promql.ErrQueryCanceled
		timeout  promql.ErrQueryTimeout
		storErr  promql.ErrStorage
	)
	switch {
	case errors.As(err, &canceled), errors.Is(err, context.Canceled):
		return &apiError{errCanceled, err}
	case errors.As(err, &timeout), errors.Is(err, context.DeadlineExceeded):
		return &apiError{errTimeout, err}
	case errors.As(err, &storErr):
		return &apiError{errInternal, err}
	}
	return &apiError{errExec, err}
}

// queryOptions reads the per-request options shared by instant and range queries.
func (a *API) queryOptions(r *http.Request) (context.Context, context.CancelFunc, promql.QueryOpts, error) {
	timeout, err := durationParam(r, "timeout")
	if err != nil {
		return nil, nil, nil, err
	}
	if r.FormValue("timeout") != "" && timeout <= 0 {
		return nil, nil, nil, fmt.Errorf("invalid parameter \"timeout\": timeout must be positive, got %s", timeout)
	}
	lookback, err := durationParam(r, "lookback_delta")
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := r.Context(), context.CancelFunc(func() {})
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, timeout)
	}
	return ctx, cancel, promql.NewPrometheusQueryOpts(r.FormValue("stats") == "all", lookback, nil), nil
}

func (a *API) query(r *http.Request) result {
	limit, err := limitParam(r)
	if err != nil {
		return badData(err)
	}
	ts, err := timeParam(r, "time", a.now())
	if err != nil {
		return badData(err)
	}
	ctx, cancel, opts, err := a.queryOptions(r)
	if err != nil {
		return badData(err)
	}
	qs := r.FormValue("query")
	qry, err := a.cfg.Engine.NewInstantQuery(ctx, a.cfg.Storage, opts, qs, ts)
	if err != nil {
		cancel()
		return badData(fmt.Errorf("invalid parameter \"query\": %w", err))
	}
	return a.exec(ctx, cancel, qry, qs, limit, r.FormValue("stats"))
}

func (a *API) queryRange(r *http.Request) result {
	limit, err := limitParam(r)
	if err != nil {
		return badData(err)
	}
	start, err := ParseTime(r.FormValue("start"))
	if err != nil {
		return badData(fmt.Errorf("invalid parameter \"start\": %w", err))
	}
	end, err := ParseTime(r.FormValue("end"))
	if err != nil {
		return badData(fmt.Errorf("invalid parameter \"end\": %w", err))
	}
	if end.Before(start) {
		return badData(errors.New("invalid parameter \"end\": end timestamp must not be before start time"))
	}
	step, err := ParseDuration(r.FormValue("step"))
	if err != nil {
		return badData(fmt.Errorf("invalid parameter \"step\": %w", err))
	}
	if step <= 0 {
		return badData(errors.New("invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer"))
	}
	if end.Sub(start)/step > MaxPointsPerSeries {
		return badData(errors.New("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"))
	}
	ctx, cancel, opts, err := a.queryOptions(r)
	if err != nil {
		return badData(err)
	}
	qs := r.FormValue("query")
	qry, err := a.cfg.Engine.NewRangeQuery(ctx, a.cfg.Storage, opts, qs, start, end, step)
	if err != nil {
		cancel()
		return badData(fmt.Errorf("invalid parameter \"query\": %w", err))
	}
	return a.exec(ctx, cancel, qry, qs, limit, r.FormValue("stats"))
}

func (a *API) exec(ctx context.Context, cancel context.CancelFunc, qry promql.Query, qs string, limit int, statsParam string) result {
	res := qry.Exec(ctx)
	closeAll := func() {
		qry.Close()
		cancel()
	}
	if res.Err != nil {
		return result{err: execError(res.Err), warnings: res.Warnings, query: qs, close: closeAll}
	}
	warnings := res.Warnings
	value := res.Value
	if limit > 0 {
		var truncated bool
		switch v := value.(type) {
		case promql.Vector:
			if len(v) > limit {
				value, truncated = v[:limit], true
			}
		case promql.Matrix:
			if len(v) > limit {
				value, truncated = v[:limit], true
			}
		}
		if truncated {
			warnings = warnings.Add(errors.New("results truncated due to limit"))
		}
	}
	var qstats *stats.QueryStats
	if statsParam != "" {
		s := stats.NewQueryStats(qry.Stats())
		qstats = &s
	}
	return result{
		data:     func(s *jsoniter.Stream) { writeQueryData(s, value, qstats) },
		warnings: warnings,
		query:    qs,
		close:    closeAll,
	}
}

func (a *API) queryExemplars(r *http.Request) result {
	start, err := timeParam(r, "start", minTime)
	if err != nil {
		return badData(err)
	}
	end, err := timeParam(r, "end", maxTime)
	if err != nil {
		return badData(err)
	}
	if end.Before(start) {
		return badData(errors.New("end timestamp must not be before start timestamp"))
	}
	expr, err := a.cfg.Engine.Parser.ParseExpr(r.FormValue("query"))
	if err != nil {
		return badData(err)
	}
	selectors := parser.ExtractSelectors(expr)
	if len(selectors) == 0 {
		return result{data: func(s *jsoniter.Stream) { s.WriteEmptyArray() }}
	}
	eq, err := a.cfg.Storage.ExemplarQuerier(r.Context())
	if err != nil {
		return result{err: execError(err)}
	}
	res, err := eq.Select(start.UnixMilli(), end.UnixMilli(), selectors...)
	if err != nil {
		return result{err: execError(err)}
	}
	return result{data: func(s *jsoniter.Stream) { writeExemplars(s, res) }}
}

func (a *API) formatQuery(r *http.Request) result {
	expr, err := a.cfg.Engine.Parser.ParseExpr(r.FormValue("query"))
	if err != nil {
		return badData(fmt.Errorf("invalid parameter \"query\": %w", err))
	}
	pretty := expr.Pretty(0)
	return result{data: func(s *jsoniter.Stream) { s.WriteString(pretty) }}
}

// selectRange reads the start, end and match[] parameters shared by the
// metadata endpoints.
func (a *API) selectRange(r *http.Request, requireMatch bool) (start, end time.Time, sets [][]*labels.Matcher, limit int, err error) {
	if limit, err = limitParam(r); err != nil {
		return
	}
	if start, err = timeParam(r, "start", minTime); err != nil {
		return
	}
	if end, err = timeParam(r, "end", maxTime); err != nil {
		return
	}
	if requireMatch && len(r.Form["match[]"]) == 0 {
		err = errors.New("no match[] parameter provided")
		return
	}
	sets, err = matchersParam(a.cfg.Engine.Parser, r)
	return
}

func (a *API) series(r *http.Request) result {
	start, end, sets, limit, err := a.selectRange(r, true)
	if err != nil {
		return badData(err)
	}
	q, err := a.cfg.Storage.Querier(start.UnixMilli(), end.UnixMilli())
	if err != nil {
		return result{err: execError(err)}
	}
	defer q.Close()
	hints := &storage.SelectHints{Start: start.UnixMilli(), End: end.UnixMilli(), Func: "series", Limit: toHintLimit(limit)}
	var set storage.SeriesSet
	if len(sets) == 1 {
		set = q.Select(r.Context(), false, hints, sets[0]...)
	} else {
		all := make([]storage.SeriesSet, 0, len(sets))
		for _, ms := range sets {
			all = append(all, q.Select(r.Context(), true, hints, ms...))
		}
		set = storage.NewMergeSeriesSet(all, 0, storage.ChainedSeriesMerge)
	}
	var (
		out      []labels.Labels
		warnings annotations.Annotations
	)
	for set.Next() {
		if err := r.Context().Err(); err != nil {
			return result{err: execError(err)}
		}
		out = append(out, set.At().Labels())
		if limit > 0 && len(out) > limit {
			out = out[:limit]
			warnings = warnings.Add(errors.New("results truncated due to limit"))
			break
		}
	}
	warnings.Merge(set.Warnings())
	if err := set.Err(); err != nil {
		return result{err: execError(err)}
	}
	return result{data: func(s *jsoniter.Stream) { writeLabelSets(s, out) }, warnings: warnings}
}

// toHintLimit asks storage for one more than the limit, to tell whether the
// answer was truncated.
func toHintLimit(limit int) int {
	if limit > 0 {
		return limit + 1
	}
	return 0
}

func (a *API) labelNames(r *http.Request) result {
	start, end, sets, limit, err := a.selectRange(r, false)
	if err != nil {
		return badData(err)
	}
	q, err := a.cfg.Storage.Querier(start.UnixMilli(), end.UnixMilli())
	if err != nil {
		return result{err: execError(err)}
	}
	defer q.Close()
	hints := &storage.LabelHints{Limit: toHintLimit(limit)}
	names, warnings, err := collectStrings(sets, func(ms []*labels.Matcher) ([]string, annotations.Annotations, error) {
		return q.LabelNames(r.Context(), hints, ms...)
	})
	if err != nil {
		return result{err: execError(err)}
	}
	names, warnings = truncate(names, limit, warnings)
	return result{data: func(s *jsoniter.Stream) { writeStrings(s, names) }, warnings: warnings}
}

func (a *API) labelValues(r *http.Request) result {
	name := r.PathValue("name")
	if strings.HasPrefix(name, "U__") {
		name = model.UnescapeName(name, model.ValueEncodingEscaping)
	}
	if !model.UTF8Validation.IsValidLabelName(name) {
		return badData(fmt.Errorf("invalid label name: %q", name))
	}
	start, end, sets, limit, err := a.selectRange(r, false)
	if err != nil {
		return badData(err)
	}
	q, err := a.cfg.Storage.Querier(start.UnixMilli(), end.UnixMilli())
	if err != nil {
		return result{err: execError(err)}
	}
	defer q.Close()
	hints := &storage.LabelHints{Limit: toHintLimit(limit)}
	values, warnings, err := collectStrings(sets, func(ms []*labels.Matcher) ([]string, annotations.Annotations, error) {
		return q.LabelValues(r.Context(), name, hints, ms...)
	})
	if err != nil {
		return result{err: execError(err)}
	}
	values, warnings = truncate(values, limit, warnings)
	return result{data: func(s *jsoniter.Stream) { writeStrings(s, values) }, warnings: warnings}
}

// collectStrings unions the answers for each matcher set (or answers once
// with no matchers), sorted and without duplicates.
func collectStrings(sets [][]*labels.Matcher, f func([]*labels.Matcher) ([]string, annotations.Annotations, error)) ([]string, annotations.Annotations, error) {
	if len(sets) == 0 {
		sets = [][]*labels.Matcher{nil}
	}
	var (
		all      []string
		warnings annotations.Annotations
	)
	for _, ms := range sets {
		vals, ws, err := f(ms)
		if err != nil {
			return nil, nil, err
		}
		warnings.Merge(ws)
		all = append(all, vals...)
	}
	slices.Sort(all)
	all = slices.Compact(all)
	if all == nil {
		all = []string{}
	}
	return all, warnings, nil
}

func truncate(vals []string, limit int, warnings annotations.Annotations) ([]string, annotations.Annotations) {
	if limit > 0 && len(vals) > limit {
		return vals[:limit], warnings.Add(errors.New("results truncated due to limit"))
	}
	return vals, warnings
}

func (a *API) metadata(r *http.Request) result {
	intParam := func(name string, def int) (int, error) {
		v := r.FormValue(name)
		if v == "" {
			return def, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("invalid parameter %q: %w", name, err)
		}
		return n, nil
	}
	limit, err := intParam("limit", -1)
	if err != nil {
		return badData(err)
	}
	perMetric, err := intParam("limit_per_metric", -1)
	if err != nil {
		return badData(err)
	}
	md := map[string][]metadata.Metadata{}
	if a.cfg.Metadata != nil && limit != 0 {
		md = a.cfg.Metadata.Get(r.FormValue("metric"), limit, perMetric)
	}
	return result{data: func(s *jsoniter.Stream) { writeMetadata(s, md) }}
}

func (a *API) buildInfo(*http.Request) result {
	b := a.cfg.Build
	return result{data: func(s *jsoniter.Stream) { s.WriteVal(b) }}
}

func (a *API) runtimeInfo(*http.Request) result {
	info := map[string]any{
		"startTime":           a.startTime.UTC(),
		"CWD":                 cwd(),
		"reloadConfigSuccess": true,
		"lastConfigTime":      a.startTime.UTC(),
		"corruptionCount":     0,
		"goroutineCount":      runtime.NumGoroutine(),
		"GOMAXPROCS":          runtime.GOMAXPROCS(0),
		"GOMEMLIMIT":          debug.SetMemoryLimit(-1),
		"GOGC":                os.Getenv("GOGC"),
		"GODEBUG":             os.Getenv("GODEBUG"),
		"storageRetention":    a.cfg.Retention,
	}
	return result{data: func(s *jsoniter.Stream) { s.WriteVal(info) }}
}

func cwd() string {
	d, err := os.Getwd()
	if err != nil {
		return "<error retrieving current working directory>"
	}
	return d
}

func (a *API) flags(*http.Request) result {
	f := a.cfg.Flags
	if f == nil {
		f = map[string]string{}
	}
	return result{data: func(s *jsoniter.Stream) { s.WriteVal(f) }}
}

func (a *API) config(*http.Request) result {
	y := ""
	if a.cfg.Config != nil {
		y = a.cfg.Config()
	}
	return result{data: func(s *jsoniter.Stream) { s.WriteVal(map[string]string{"yaml": y}) }}
}

type statEntry struct {
	Name  string `json:"name"`
	Value uint64 `json:"value"`
}

func (a *API) tsdbStatus(r *http.Request) result {
	if a.cfg.TSDB == nil {
		return result{err: &apiError{errUnavailable, errors.New("TSDB status is not available")}}
	}
	limit := 10
	if v := r.FormValue("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return badData(errors.New("limit must be a positive number"))
		}
		limit = n
	}
	st := a.cfg.TSDB.HeadStats(model.MetricNameLabel, limit)
	conv := func(in []index.Stat) []statEntry {
		out := make([]statEntry, 0, len(in))
		for _, e := range in {
			out = append(out, statEntry{Name: e.Name, Value: e.Count})
		}
		return out
	}
	headStats := map[string]any{
		"numSeries":     st.NumSeries,
		"numLabelPairs": st.IndexPostingStats.NumLabelPairs,
		"minTime":       st.MinTime,
		"maxTime":       st.MaxTime,
	}
	data := map[string]any{
		"headStats":                   headStats,
		"seriesCountByMetricName":     conv(st.IndexPostingStats.CardinalityMetricsStats),
		"labelValueCountByLabelName":  conv(st.IndexPostingStats.CardinalityLabelStats),
		"memoryInBytesByLabelName":    conv(st.IndexPostingStats.LabelValueStats),
		"seriesCountByLabelValuePair": conv(st.IndexPostingStats.LabelValuePairsStats),
	}
	return result{data: func(s *jsoniter.Stream) { s.WriteVal(data) }}
}
