package ui

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Point is one sample of a series.
type Point struct {
	T time.Time
	V float64
}

// Series is a query result series: its labels, written as PromQL writes
// them ({service="checkout", version="v2"}), and its points in time order.
type Series struct {
	Name   string
	Points []Point
}

// chart is a line chart drawn on the server as SVG: no script, no canvas.
type chart struct {
	Title string
	// Format writes a value of the y axis with its unit.
	Format func(float64) string
	Series []Series
	// Start and End bound the x axis; Step is the resolution (a gap of more
	// than 1.5 steps between two points breaks the line).
	Start, End time.Time
	Step       time.Duration
	// Marker, when set, draws a vertical line (the deploy) labelled MarkerLabel.
	Marker      time.Time
	MarkerLabel string
	// Width and Height are the drawing's size (chartW × chartH when zero).
	Width, Height int
}

// Chart geometry, in SVG user units.
const (
	chartW, chartH         = 720, 220
	padL, padR, padT, padB = 64, 12, 10, 26
	maxChartSeries         = 10
)

// svgChart is what the chart template draws.
type svgChart struct {
	W, H           int
	Title          string
	Plot           rect
	YTicks, XTicks []tick
	Paths          []svgPath
	Marker         *svgMarker
	Empty          string
	More           int // series not drawn
}

type rect struct{ X, Y, W, H float64 }

type tick struct {
	Pos    float64
	Label  string
	Anchor string // text-anchor of an x label: start, middle or end
}

type svgPath struct {
	D     string
	Class string
	Name  string
	Last  string
}

type svgMarker struct {
	X     float64
	Label string
}

// layout computes the chart's coordinates.
func (c chart) layout() svgChart {
	w, h := c.Width, c.Height
	if w <= 0 || h <= 0 {
		w, h = chartW, chartH
	}
	out := svgChart{W: w, H: h, Title: c.Title, Plot: rect{padL, padT, float64(w - padL - padR), float64(h - padT - padB)}}
	format := c.Format
	if format == nil {
		format = func(v float64) string { return fmt.Sprint(v) }
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	series := c.Series
	if len(series) > maxChartSeries {
		out.More = len(series) - maxChartSeries
		series = series[:maxChartSeries]
	}
	for _, s := range series {
		for _, p := range s.Points {
			if finite(p.V) {
				lo, hi = math.Min(lo, p.V), math.Max(hi, p.V)
			}
		}
	}
	if math.IsInf(lo, 1) {
		out.Empty = "no data in this range"
		return out
	}
	// Values that cannot be negative start the axis at zero.
	if lo >= 0 {
		lo = 0
	}
	if hi == lo {
		hi = lo + math.Max(math.Abs(lo), 1)
	}
	ticks := niceTicks(lo, hi, 4)
	lo, hi = ticks[0], ticks[len(ticks)-1]
	span := c.End.Sub(c.Start).Seconds()
	if span <= 0 {
		span = 1
	}
	x := func(t time.Time) float64 { return out.Plot.X + out.Plot.W*t.Sub(c.Start).Seconds()/span }
	y := func(v float64) float64 { return out.Plot.Y + out.Plot.H*(1-(v-lo)/(hi-lo)) }
	for _, v := range ticks {
		out.YTicks = append(out.YTicks, tick{Pos: round1(y(v)), Label: format(v)})
	}
	for i := 0; i <= 4; i++ {
		t := c.Start.Add(time.Duration(float64(c.End.Sub(c.Start)) * float64(i) / 4))
		anchor := "middle"
		switch i {
		case 0:
			anchor = "start"
		case 4:
			anchor = "end"
		}
		out.XTicks = append(out.XTicks, tick{Pos: round1(x(t)), Label: t.UTC().Format("15:04:05"), Anchor: anchor})
	}
	gap := 1.5 * c.Step.Seconds()
	for i, s := range series {
		var d strings.Builder
		var prev time.Time
		last := math.NaN()
		for _, p := range s.Points {
			if !finite(p.V) || p.T.Before(c.Start) || p.T.After(c.End) {
				prev = time.Time{}
				continue
			}
			cmd := "L"
			if prev.IsZero() || (gap > 0 && p.T.Sub(prev).Seconds() > gap) {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%.1f %.1f ", cmd, x(p.T), y(p.V))
			prev, last = p.T, p.V
		}
		out.Paths = append(out.Paths, svgPath{D: strings.TrimSpace(d.String()), Class: fmt.Sprintf("s%d", i), Name: s.Name, Last: lastValue(last, format)})
	}
	if !c.Marker.IsZero() && !c.Marker.Before(c.Start) && !c.Marker.After(c.End) {
		out.Marker = &svgMarker{X: round1(x(c.Marker)), Label: c.MarkerLabel}
	}
	return out
}

func lastValue(v float64, format func(float64) string) string {
	if math.IsNaN(v) {
		return "no data"
	}
	return format(v)
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// niceTicks returns about n+1 round values (steps of 1, 2 or 5 × 10^k)
// covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	start := math.Floor(lo/step) * step
	var out []float64
	for i := 0; i <= 4*n; i++ {
		v := cleanFloat(start + float64(i)*step)
		out = append(out, v)
		if v >= hi && i > 0 {
			break
		}
	}
	return out
}

// cleanFloat drops the noise of repeated additions (0.30000000000000004).
func cleanFloat(v float64) float64 {
	if v == 0 {
		return 0
	}
	p := math.Pow(10, 12-math.Ceil(math.Log10(math.Abs(v))))
	return math.Round(v*p) / p
}
