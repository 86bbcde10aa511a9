package dashboards

import (
	"fmt"
	"math"
	"time"

	"regexp"
	"sort"
	"strings"

	"github.com/prometheus/common/model"

	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

// The series the dashboards query are named in internal/semconv (what
// Vigil derives, the rules `vigil gen rules` records, the deployment and
// verdict series), and their RED expressions are internal/red's, the same
// the verdict and the generated rules use. Every one sums the collector
// replicas away.
const (
	datasourceVar  = "datasource"
	datasourceType = "prometheus"
	// rateInterval is the window of every rate.
	rateInterval = "$__rate_interval"
)

// datasource is the reference every panel, variable and annotation uses:
// the ${datasource} template variable, never a fixed uid, so the same JSON
// works on any Grafana whatever its Prometheus datasource is called.
func datasource() common.DataSourceRef {
	t, uid := datasourceType, "${"+datasourceVar+"}"
	return common.DataSourceRef{Type: &t, Uid: &uid}
}

// promQuery is a range query with a legend.
func promQuery(ref, expr, legend string) *prometheus.DataqueryBuilder {
	q := prometheus.NewDataqueryBuilder().
		Datasource(datasource()).
		RefId(ref).
		Expr(expr).
		Range()
	if legend != "" {
		q = q.LegendFormat(legend)
	}
	return q
}

// tableQuery is an instant query formatted as a table.
func tableQuery(ref, expr string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().
		Datasource(datasource()).
		RefId(ref).
		Expr(expr).
		Instant().
		Format(prometheus.PromQueryFormatTable)
}

// matchers joins non-empty label matchers with commas.
func matchers(ms ...string) string {
	var out []string
	for _, m := range ms {
		if m != "" {
			out = append(out, m)
		}
	}
	return strings.Join(out, ",")
}

// regexAlternation returns an anchored-by-PromQL regex matching exactly the
// given values.
func regexAlternation(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = regexp.QuoteMeta(v)
	}
	return strings.Join(q, "|")
}

func ptr[T any](v T) *T { return &v }

// thresholds builds absolute thresholds: base colour first, then
// value/colour pairs in increasing order.
func thresholds(base string, steps ...step) *dashboard.ThresholdsConfigBuilder {
	s := []dashboard.Threshold{{Color: base}}
	for _, st := range steps {
		s = append(s, dashboard.Threshold{Value: ptr(st.value), Color: st.color})
	}
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(s)
}

type step struct {
	value float64
	color string
}

// legend suits a time series panel span columns wide: from half the
// grid up, a table on the right with the last and the highest value, which
// lists any number of versions without scrolling; narrower, a list at the
// bottom whose entries flow side by side.
func legend(span uint32) *common.VizLegendOptionsBuilder {
	if span >= 12 {
		return common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeTable).
			Placement(common.LegendPlacementRight).
			ShowLegend(true).
			Calcs([]string{"lastNotNull", "max"})
	}
	return common.NewVizLegendOptionsBuilder().
		DisplayMode(common.LegendDisplayModeList).
		Placement(common.LegendPlacementBottom).
		ShowLegend(true).
		Calcs([]string{})
}

// neutral are the thresholds of a stat whose value is neither good nor
// bad (a rate, a count, a version): one blue step. Without thresholds
// Grafana colours a stat's value and sparkline red from 80 up.
func neutral() *dashboard.ThresholdsConfigBuilder { return thresholds("blue") }

func tooltip() *common.VizTooltipOptionsBuilder {
	return common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending)
}

// valueColors maps text values (e.g. verdict decisions) to colours.
func valueColors(m map[string]string) dashboard.ValueMapping {
	opts := map[string]dashboard.ValueMappingResult{}
	i := int32(0)
	for _, k := range sortedKeys(m) {
		opts[k] = dashboard.ValueMappingResult{Color: ptr(m[k]), Index: ptr(i)}
		i++
	}
	return dashboard.ValueMapping{ValueMap: &dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: opts}}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func replaceAll(s, old, repl string) string { return strings.ReplaceAll(s, old, repl) }

// footer is the table footer Grafana writes by default (hidden, no
// reducer); set explicitly so the JSON has a reducer list, not null.
func footer() *common.TableFooterOptionsBuilder {
	return common.NewTableFooterOptionsBuilder().Show(false).Reducer([]string{"sum"}).CountRows(false)
}

// round removes float noise such as 1-0.999 = 0.0009999999999998899.
func round(v float64) float64 { return math.Round(v*1e9) / 1e9 }

// days prints a duration in days when it is whole days (28d, not 4w).
func days(d model.Duration) string {
	if day := model.Duration(24 * time.Hour); d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	return d.String()
}
