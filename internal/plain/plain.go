// Package plain writes numbers as people read them in a report: counts with
// thousands separators (4,500), shares as percentages with a sensible number
// of digits (4.1%), durations in the unit that fits (38 ms, 9 min), no
// floating-point noise (never 2.74e-18 or 0.0023110000000000001). The CLI and
// the web UI write verdicts with it, so both say the same thing the same way.
package plain

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

var printer = message.NewPrinter(language.English)

// Count writes a whole number of things with thousands separators: 4,500.
// Fractions (a mean count) are rounded.
func Count(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return printer.Sprintf("%d", int64(math.Round(v)))
}

// Number writes a quantity without a unit with three significant digits,
// thousands separators above 1,000 and no exponent for everyday magnitudes:
// 0.0231, 4.1, 147, 12,345.
func Number(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case v == 0:
		return "0"
	}
	a := math.Abs(v)
	if a >= 1000 {
		return Count(v)
	}
	if a < 1e-4 || a >= 1e15 {
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	// Three significant digits, then trailing zeros dropped: 4.10 -> 4.1.
	digits := max(0, 2-int(math.Floor(math.Log10(a))))
	s := strconv.FormatFloat(v, 'f', digits, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// Percent writes a share (0.041) as a percentage: 4.1%. Shares under 10%
// keep two significant digits (0.23%, 4.1%); larger ones one decimal at
// most (12.5%, 100%).
func Percent(share float64) string {
	if math.IsNaN(share) || math.IsInf(share, 0) {
		return "-"
	}
	p := 100 * share
	a := math.Abs(p)
	var s string
	switch {
	case a == 0:
		s = "0"
	case a < 10:
		digits := max(1, 1-int(math.Floor(math.Log10(a))))
		s = strings.TrimRight(strings.TrimRight(strconv.FormatFloat(p, 'f', min(digits, 4), 64), "0"), ".")
		if s == "0" || s == "-0" {
			s = "<0.0001"
		}
	default:
		s = strings.TrimRight(strings.TrimRight(strconv.FormatFloat(p, 'f', 1, 64), "0"), ".")
	}
	return s + "%"
}

// Change writes a relative change (0.5: half as much again) as a signed
// percentage: +50%, -12%, +1,100%.
func Change(rel float64) string {
	if math.IsNaN(rel) || math.IsInf(rel, 0) {
		return "-"
	}
	p := 100 * rel
	if math.Abs(p) < 0.05 {
		return "0%"
	}
	if math.Abs(p) < 10 {
		s := strconv.FormatFloat(p, 'f', 1, 64)
		if !strings.HasPrefix(s, "-") {
			s = "+" + s
		}
		return strings.Replace(s, ".0", "", 1) + "%"
	}
	return printer.Sprintf("%+d", int64(math.Round(p))) + "%"
}

// Seconds writes a length of time given in seconds, as a latency is read:
// 850 µs, 38 ms, 1.2 s, 2 min 5 s.
func Seconds(s float64) string {
	if math.IsNaN(s) || math.IsInf(s, 0) {
		return "-"
	}
	a := math.Abs(s)
	switch {
	case a == 0:
		return "0 s"
	case a < 1e-3:
		return Number(s*1e6) + " µs"
	case a < 1:
		return Number(s*1e3) + " ms"
	case a < 60:
		return Number(s) + " s"
	}
	return Duration(time.Duration(s * float64(time.Second)))
}

// Duration writes a wait or an age in whole units: 45 s, 9 min 3 s, 2 h 5 min, 3 days.
func Duration(d time.Duration) string {
	if d < 0 {
		return "-" + Duration(-d)
	}
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		m, s := int(d/time.Minute), int((d%time.Minute)/time.Second)
		if s == 0 || m >= 10 {
			return fmt.Sprintf("%d min", int(math.Round(d.Minutes())))
		}
		return fmt.Sprintf("%d min %d s", m, s)
	case d < 48*time.Hour:
		h, m := int(d/time.Hour), int((d%time.Hour)/time.Minute)
		if m == 0 {
			return fmt.Sprintf("%d h", h)
		}
		return fmt.Sprintf("%d h %d min", h, m)
	}
	return fmt.Sprintf("%d days", int(math.Round(d.Hours()/24)))
}

// Rate writes events per second with a unit: 5.1 req/s, 0.2 req/s, 1,200 req/s.
func Rate(perSecond float64, unit string) string {
	if math.IsNaN(perSecond) || math.IsInf(perSecond, 0) {
		return "-"
	}
	return Number(perSecond) + " " + unit + "/s"
}

// Ago writes how long before now t was: "12 s ago", "3 min ago"; the
// date and time (UTC) beyond two days.
func Ago(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "in " + Duration(-d)
	case d < 48*time.Hour:
		return Duration(d) + " ago"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// Plural writes n and the noun, with an s when n is not 1: "1 request", "38 requests".
func Plural(n float64, noun string) string {
	c := Count(n)
	if c == "1" {
		return c + " " + noun
	}
	return c + " " + noun + "s"
}
