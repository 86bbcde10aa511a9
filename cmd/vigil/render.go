package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/guptarohit/asciigraph"
	"github.com/prometheus/common/model"
	"golang.org/x/term"
)

// terminal describes where output goes: a person's terminal gets charts,
// sparklines and colour; a pipe or file gets plain, stable text.
type terminal struct {
	tty   bool
	color bool
	width int
}

func detectTerminal(w io.Writer) terminal {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return terminal{width: 120}
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil || width <= 0 {
		width = 100
	}
	_, noColor := os.LookupEnv("NO_COLOR")
	return terminal{tty: true, color: !noColor && os.Getenv("TERM") != "dumb", width: width}
}

func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// shortValue formats v for charts and summaries: four significant digits.
func shortValue(v float64) string {
	switch {
	case math.IsNaN(v), math.IsInf(v, 0):
		return formatValue(v)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

func seriesName(m model.Metric) string {
	if len(m) == 0 {
		return "{}"
	}
	return m.String()
}

// renderVector prints one row per series: the series, its value and the sample time.
func renderVector(w io.Writer, v model.Vector, _ terminal) {
	if len(v) == 0 {
		fmt.Fprintln(w, "(empty result)")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERIES\tVALUE\tTIMESTAMP")
	for _, s := range v {
		val := formatValue(float64(s.Value))
		if s.Histogram != nil {
			val = fmt.Sprintf("histogram{count=%s, sum=%s}", formatValue(float64(s.Histogram.Count)), formatValue(float64(s.Histogram.Sum)))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", seriesName(s.Metric), val, s.Timestamp.Time().UTC().Format(time.RFC3339Nano))
	}
	_ = tw.Flush()
}

// maxCharted is how many series a chart draws; the table lists them all.
const maxCharted = 8

var chartColors = []asciigraph.AnsiColor{asciigraph.Blue, asciigraph.Red, asciigraph.Green, asciigraph.Yellow, asciigraph.Magenta, asciigraph.Cyan, asciigraph.Orange, asciigraph.Purple}

// renderMatrix draws a range result. On a terminal: a line chart of up to
// maxCharted series, then a table with each series' last, min and max value
// and a sparkline. Elsewhere: one "series<TAB>unix_time<TAB>value" line per point.
func renderMatrix(w io.Writer, m model.Matrix, start, end time.Time, step time.Duration, t terminal) {
	if len(m) == 0 {
		fmt.Fprintln(w, "(empty result)")
		return
	}
	if !t.tty {
		for _, s := range m {
			name := seriesName(s.Metric)
			for _, p := range s.Values {
				fmt.Fprintf(w, "%s\t%s\t%s\n", name, p.Timestamp.String(), formatValue(float64(p.Value)))
			}
			for _, h := range s.Histograms {
				fmt.Fprintf(w, "%s\t%s\thistogram{count=%s, sum=%s}\n", name, h.Timestamp.String(), formatValue(float64(h.Histogram.Count)), formatValue(float64(h.Histogram.Sum)))
			}
		}
		return
	}

	n := int(end.Sub(start)/step) + 1
	grid := make([][]float64, 0, min(len(m), maxCharted))
	var legends []string
	for i, s := range m {
		if i == maxCharted {
			break
		}
		row := make([]float64, n)
		for j := range row {
			row[j] = math.NaN()
		}
		for _, p := range s.Values {
			if j := int(p.Timestamp.Time().Sub(start) / step); j >= 0 && j < n {
				row[j] = float64(p.Value)
			}
		}
		grid = append(grid, row)
		legends = append(legends, truncate(seriesName(s.Metric), 60))
	}
	if anyFinite(grid) {
		width := max(20, min(n, t.width-14))
		opts := []asciigraph.Option{
			asciigraph.Height(12),
			asciigraph.Width(width),
			asciigraph.Precision(3),
			asciigraph.XAxisRange(float64(start.Unix()), float64(end.Unix())),
			asciigraph.XAxisTickCount(4),
			asciigraph.XAxisValueFormatter(func(v float64) string { return time.Unix(int64(v), 0).Format("15:04:05") }),
		}
		if t.color {
			opts = append(opts, asciigraph.SeriesColors(chartColors[:len(grid)]...), asciigraph.SeriesLegends(legends...))
		} else if len(grid) == 1 {
			opts = append(opts, asciigraph.Caption(legends[0]))
		}
		fmt.Fprintln(w, asciigraph.PlotMany(grid, opts...))
		fmt.Fprintln(w)
	}

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERIES\tLAST\tMIN\tMAX\tTREND")
	for _, s := range m {
		vals := make([]float64, 0, len(s.Values))
		for _, p := range s.Values {
			vals = append(vals, float64(p.Value))
		}
		if len(vals) == 0 {
			fmt.Fprintf(tw, "%s\t(%d histograms)\t\t\t\n", seriesName(s.Metric), len(s.Histograms))
			continue
		}
		lo, hi := minMax(vals)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", seriesName(s.Metric), shortValue(vals[len(vals)-1]), shortValue(lo), shortValue(hi), sparkline(vals, 24))
	}
	_ = tw.Flush()
	if len(m) > maxCharted {
		fmt.Fprintf(w, "(chart shows the first %d of %d series)\n", maxCharted, len(m))
	}
}

func anyFinite(grid [][]float64) bool {
	for _, row := range grid {
		for _, v := range row {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				return true
			}
		}
	}
	return false
}

func minMax(vals []float64) (float64, float64) {
	finite := slices.DeleteFunc(slices.Clone(vals), func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) })
	if len(finite) == 0 {
		return math.NaN(), math.NaN()
	}
	return slices.Min(finite), slices.Max(finite)
}

var sparkTicks = []rune("▁▂▃▄▅▆▇█")

// sparkline draws vals in at most width cells, averaging values that share a cell.
func sparkline(vals []float64, width int) string {
	if len(vals) == 0 {
		return ""
	}
	cells := min(width, len(vals))
	avg := make([]float64, cells)
	for i := range cells {
		lo, hi := i*len(vals)/cells, (i+1)*len(vals)/cells
		sum, n := 0.0, 0
		for _, v := range vals[lo:hi] {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				sum += v
				n++
			}
		}
		avg[i] = math.NaN()
		if n > 0 {
			avg[i] = sum / float64(n)
		}
	}
	lo, hi := minMax(avg)
	var sb strings.Builder
	for _, v := range avg {
		switch {
		case math.IsNaN(v):
			sb.WriteRune(' ')
		case hi == lo:
			sb.WriteRune(sparkTicks[len(sparkTicks)/2])
		default:
			sb.WriteRune(sparkTicks[int((v-lo)/(hi-lo)*float64(len(sparkTicks)-1)+0.5)])
		}
	}
	return sb.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
