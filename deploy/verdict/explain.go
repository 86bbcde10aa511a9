package verdict

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Explain words a verdict for people: each signal's Text and the verdict's
// Summary, with units and no floating-point noise. The engine calls it on
// every verdict it returns; callers that change a verdict's decision (an
// error verdict) call it again. Signals whose definitions are not given
// are worded by their names (the default signals').
func Explain(v *Verdict) { explain(v, nil) }

// explain words v; specs are the signals judged, in order (nil: unknown).
func explain(v *Verdict, specs []Signal) {
	byName := map[string]Signal{}
	for _, s := range DefaultSignals() {
		byName[s.Name] = s
	}
	for _, s := range specs {
		byName[s.Name] = s.withDefaults()
	}
	w := worder{v: v, specs: byName}
	for i := range v.Signals {
		v.Signals[i].Text = w.text(&v.Signals[i])
	}
	v.Summary = w.summary()
}

type worder struct {
	v     *Verdict
	specs map[string]Signal
}

// where says what the new version is compared with.
func (w worder) where() string {
	if w.v.BaselineMode == ModeBefore {
		return "on the previous version before the deploy"
	}
	return "on the previous version"
}

// label names a signal in prose.
func label(name string) string {
	switch name {
	case "request_rate":
		return "traffic"
	case "error_ratio":
		return "error ratio"
	case "log_error_ratio":
		return "error log ratio"
	case "latency_p50":
		return "median latency"
	case "critical_alerts":
		return "critical alerts"
	case "slo_availability":
		return "availability SLO (error ratio)"
	case "slo_latency":
		return "latency SLO"
	}
	if q, ok := strings.CutPrefix(name, "latency_"); ok {
		return q + " latency"
	}
	return strings.ReplaceAll(name, "_", " ")
}

// unit is what a signal counts (ratio, traffic) or measures (compare).
func (w worder) unit(r *SignalResult) string {
	if s, ok := w.specs[r.Name]; ok && s.Unit != "" {
		return s.Unit
	}
	switch {
	case r.Kind == KindRatio || r.Kind == KindTraffic:
		return "requests"
	case strings.HasPrefix(r.Name, "latency_") || r.Name == "slo_latency":
		return "seconds"
	}
	return ""
}

// value renders one value of a signal in its unit.
func (w worder) value(r *SignalResult, x float64) string {
	if r.Kind == KindRatio {
		return fmtPct(x)
	}
	switch u := w.unit(r); u {
	case "seconds", "s":
		return fmtSeconds(x)
	case "bytes":
		return fmtBytes(x)
	case "ratio":
		return fmtPct(x)
	case "percent", "%":
		return fmtSig(x, 3) + "%"
	case "":
		return fmtSig(x, 3)
	default:
		return fmtSig(x, 3) + " " + u
	}
}

// measure is the signal with its figures, without judging them: "error
// ratio 4.1% vs 0.9% on the previous version (38 of 920 requests vs 41 of
// 4,500)".
func (w worder) measure(r *SignalResult) string {
	name := label(r.Name)
	switch r.Kind {
	case KindAlert:
		if r.Status == StatusFail {
			return fmt.Sprintf("a critical alert fired for %s", w.v.Service)
		}
		return "no critical alert fired"
	case KindTraffic:
		if r.Canary == nil {
			return fmt.Sprintf("no %s of the new version", w.unit(r))
		}
		n := *r.Canary * float64(r.Samples[0])
		s := fmt.Sprintf("%s %s of the new version", fmtCount(n), w.unit(r))
		if w.v.TrafficSeconds > 0 {
			s += fmt.Sprintf(" in %s (%s per second)", fmtDuration(w.v.TrafficSeconds), fmtSig(n/w.v.TrafficSeconds, 2))
		}
		return s
	}
	if r.Canary == nil && r.Baseline == nil {
		return name
	}
	var s string
	switch {
	case r.Canary != nil && r.Baseline != nil:
		s = fmt.Sprintf("%s %s vs %s %s", name, w.value(r, *r.Canary), w.value(r, *r.Baseline), w.where())
	case r.Canary != nil:
		s = fmt.Sprintf("%s %s on the new version", name, w.value(r, *r.Canary))
	default:
		s = fmt.Sprintf("%s %s", name, w.value(r, *r.Baseline)) + " " + w.where()
	}
	if c := r.Counts; c != nil && r.Kind == KindRatio {
		if c[1].Total > 0 {
			s += fmt.Sprintf(" (%s of %s %s vs %s of %s)", fmtCount(c[0].Bad), fmtCount(c[0].Total), w.unit(r), fmtCount(c[1].Bad), fmtCount(c[1].Total))
		} else if c[0].Total > 0 {
			s += fmt.Sprintf(" (%s of %s %s)", fmtCount(c[0].Bad), fmtCount(c[0].Total), w.unit(r))
		}
	}
	return s
}

// text is a signal's Text: its figures and what they mean.
func (w worder) text(r *SignalResult) string {
	name := label(r.Name)
	if r.Kind == KindAlert {
		if r.Status == StatusFail {
			return "critical alerts: " + w.measure(r) + " during the analysis"
		}
		return "critical alerts: none fired"
	}
	if r.Kind == KindTraffic {
		if r.Status == StatusNoData {
			return "traffic: no data (" + w.measure(r) + " yet)"
		}
		return "traffic: " + w.measure(r)
	}
	spec, hasSpec := w.specs[r.Name]
	switch r.Status {
	case StatusNoData:
		switch {
		case r.Finding == FindingNoBaseline:
			if r.Canary != nil {
				return w.measure(r) + ": no previous version to compare with"
			}
			return name + ": no previous version to compare with"
		case r.Canary == nil && (r.Counts == nil || r.Counts[0].Total == 0):
			return name + ": no data for the new version"
		default:
			return w.measure(r) + ": no data for the previous version"
		}
	case StatusFail:
		if r.Finding == FindingBound {
			return w.measure(r) + ": " + w.boundBroken(r, spec, hasSpec)
		}
		return w.measure(r) + ": " + w.worse(r, true)
	case StatusPass:
		if w.v.BaselineMode == ModeNone {
			return w.measure(r) + ": shown within " + w.bounds(r, spec, hasSpec)
		}
		return w.measure(r) + ": " + w.worse(r, false)
	}
	// Pending.
	switch {
	case r.Finding == FindingFewSamples:
		return fmt.Sprintf("%s: not judged yet, %d and %d samples so far", w.measure(r), r.Samples[0], r.Samples[1])
	case r.Finding == FindingSuspect:
		return w.measure(r) + ": worse than allowed, but not significantly" + w.oddsOrP(r)
	case w.v.Final:
		if w.v.BaselineMode == ModeNone {
			return w.measure(r) + ": " + w.bounds(r, spec, hasSpec) + " not broken"
		}
		return w.measure(r) + ": not significantly worse" + w.oddsOrP(r)
	}
	if r.Leaning == LeaningUndecided || r.Leaning == "" {
		return w.measure(r) + ": undecided so far" + w.oddsOrP(r)
	}
	return w.measure(r) + ": undecided so far, leaning " + r.Leaning + w.oddsOrP(r)
}

// worse says how a judged signal compares.
func (w worder) worse(r *SignalResult, failed bool) string {
	var by string
	switch {
	case r.EffectSize != nil && math.Abs(*r.EffectSize) < 0.0005:
		by = "no change"
	case r.EffectSize != nil:
		by = fmtSignedPct(*r.EffectSize)
	case r.Canary != nil && r.Baseline != nil && r.Kind != KindRatio:
		by = signed(w.value(r, math.Abs(*r.Canary-*r.Baseline)), *r.Canary-*r.Baseline)
	}
	s := "within tolerance"
	if failed {
		s = "significantly worse"
	}
	if by != "" {
		s += " (" + by + ")"
	}
	if !failed && r.Kind != KindRatio {
		return s // a compare signal passes on its confidence bound, not on its p-value
	}
	return s + w.oddsOrP(r)
}

// oddsOrP is the test's figure: the odds of a ratio signal, the p-value
// of a compare signal.
func (w worder) oddsOrP(r *SignalResult) string {
	switch {
	case r.LogLR != nil && *r.LogLR >= 0:
		return fmt.Sprintf(", %s to 1 for a regression", fmtOdds(*r.LogLR))
	case r.LogLR != nil:
		return fmt.Sprintf(", %s to 1 against a regression", fmtOdds(-*r.LogLR))
	case r.PValue != nil:
		return ", " + fmtP(*r.PValue)
	}
	return ""
}

func (w worder) bounds(r *SignalResult, spec Signal, ok bool) string {
	var parts []string
	if ok && spec.Max != nil {
		parts = append(parts, "at most "+w.value(r, *spec.Max))
	}
	if ok && spec.Min != nil {
		parts = append(parts, "at least "+w.value(r, *spec.Min))
	}
	if len(parts) == 0 {
		return "its bounds"
	}
	return "its bound (" + strings.Join(parts, ", ") + ")"
}

func (w worder) boundBroken(r *SignalResult, spec Signal, ok bool) string {
	var s string
	switch {
	case ok && spec.Max != nil && r.Canary != nil && *r.Canary > *spec.Max:
		s = "above its bound of " + w.value(r, *spec.Max)
	case ok && spec.Min != nil && r.Canary != nil && *r.Canary < *spec.Min:
		s = "below its bound of " + w.value(r, *spec.Min)
	default:
		s = "beyond its absolute bound"
	}
	if r.PValue != nil {
		s += ", " + fmtP(*r.PValue)
	}
	return s
}

// deciding orders the signals that explain the decision, first the one
// that decided: critical failures, then failures by weight and strength.
func (w worder) deciding(status Status) []*SignalResult {
	var out []*SignalResult
	for i := range w.v.Signals {
		r := &w.v.Signals[i]
		if r.Status == status && r.Kind != KindTraffic {
			out = append(out, r)
		}
	}
	strength := func(r *SignalResult) float64 {
		switch {
		case r.LogLR != nil:
			return *r.LogLR
		case r.PValue != nil && *r.PValue > 0:
			return -math.Log(*r.PValue)
		}
		return math.Inf(1)
	}
	slices.SortStableFunc(out, func(a, b *SignalResult) int {
		ca, cb := a.Critical || a.Finding == FindingBound || a.Kind == KindAlert, b.Critical || b.Finding == FindingBound || b.Kind == KindAlert
		switch {
		case ca != cb && ca:
			return -1
		case ca != cb:
			return 1
		case a.Weight != b.Weight:
			if a.Weight > b.Weight {
				return -1
			}
			return 1
		}
		if status == StatusPass {
			return 0 // in the order they are defined
		}
		sa, sb := strength(a), strength(b)
		switch {
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		}
		return 0
	})
	return out
}

func names(rs []*SignalResult) string {
	var out []string
	for _, r := range rs {
		out = append(out, label(r.Name))
	}
	return joinAnd(out)
}

func joinAnd(s []string) string {
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// summary is the verdict's Summary.
func (w worder) summary() string {
	v := w.v
	var b strings.Builder
	if v.BaselineMode == ModeNone {
		fmt.Fprintf(&b, "First deploy of %s: there is no previous version to compare with, so %s is judged against the catalog's SLOs alone. ", v.Service, v.Version)
	}
	after := fmt.Sprintf("after %s of traffic", fmtDuration(v.TrafficSeconds))
	watch := v.Stage == StageWatch
	if watch {
		after = fmt.Sprintf("%s after the promotion", fmtDuration(v.TrafficSeconds))
	}
	switch v.Decision {
	case Error:
		fmt.Fprintf(&b, "No verdict: %s.", strings.TrimSuffix(v.Reason, "."))
	case Rollback:
		failing := w.deciding(StatusFail)
		if watch {
			b.WriteString("Regression " + after)
		} else {
			b.WriteString("Rollback " + after)
		}
		if len(failing) == 0 {
			fmt.Fprintf(&b, ": %s.", v.Reason)
			break
		}
		b.WriteString(": " + w.measure(failing[0]))
		if failing[0].Finding == FindingBound {
			spec, ok := w.specs[failing[0].Name]
			b.WriteString(", " + w.boundBroken(failing[0], spec, ok))
		}
		b.WriteString(".")
		if len(failing) > 1 {
			fmt.Fprintf(&b, " Also worse: %s.", names(failing[1:]))
		}
	case Promote:
		if watch {
			fmt.Fprintf(&b, "No regression in the %s watch after the promotion", fmtDuration(v.WindowSeconds))
		} else {
			b.WriteString("Promote " + after)
		}
		passed := w.deciding(StatusPass)
		if !v.Final {
			passed = nil
		}
		for i := range v.Signals {
			if r := &v.Signals[i]; r.Status == StatusPending && r.Kind != KindTraffic {
				passed = append(passed, r)
			}
		}
		if v.BaselineMode == ModeNone {
			b.WriteString(": no SLO broken")
		} else {
			b.WriteString(": no signal worse than " + w.where() + " beyond tolerance")
		}
		var shown []string
		for _, r := range passed {
			if r.Kind == KindAlert || len(shown) == 3 {
				continue
			}
			shown = append(shown, w.measure(r))
		}
		if len(shown) > 0 {
			b.WriteString(" — " + strings.Join(shown, "; "))
		}
		b.WriteString(".")
		if nd := w.noData(); nd != "" {
			b.WriteString(" " + nd)
		}
	default:
		w.undecided(&b, after)
	}
	return b.String()
}

// noData names the signals that had no data.
func (w worder) noData() string {
	var nd []*SignalResult
	for i := range w.v.Signals {
		r := &w.v.Signals[i]
		if r.Status == StatusNoData && r.Kind != KindTraffic && r.Finding != FindingNoBaseline {
			nd = append(nd, r)
		}
	}
	if len(nd) == 0 {
		return ""
	}
	return fmt.Sprintf("No data for %s.", names(nd))
}

// undecided words an inconclusive verdict, final or not.
func (w worder) undecided(b *strings.Builder, after string) {
	v := w.v
	var pending, suspect []*SignalResult
	for i := range v.Signals {
		r := &v.Signals[i]
		if r.Status != StatusPending || r.Kind == KindTraffic {
			continue
		}
		if r.Finding == FindingSuspect {
			suspect = append(suspect, r)
		} else {
			pending = append(pending, r)
		}
	}
	requests, haveTraffic := 0.0, false
	for i := range v.Signals {
		if r := &v.Signals[i]; r.Kind == KindTraffic && r.Canary != nil {
			requests, haveTraffic = *r.Canary*float64(r.Samples[0]), true
		}
	}
	if v.Stage == StageWatch && !v.Final {
		fmt.Fprintf(b, "Watching for a regression after the promotion: %s of %s, none so far.", fmtDuration(v.TrafficSeconds), fmtDuration(v.WindowSeconds))
		return
	}
	if v.Final {
		fmt.Fprintf(b, "Inconclusive at the end of the %s window", fmtDuration(v.WindowSeconds))
	} else {
		b.WriteString("Undecided " + after)
	}
	switch {
	case len(suspect) > 0:
		fmt.Fprintf(b, ": %s, worse than allowed but not significantly; more traffic (a longer window) would decide.", w.measure(suspect[0]))
	case strings.Contains(v.Reason, "canary requests"):
		fmt.Fprintf(b, ": %s requests of the new version so far, too few to judge.", fmtCount(requests))
	case strings.Contains(v.Reason, "no signal"):
		b.WriteString(": no signal has data for both versions yet.")
		if !haveTraffic {
			b.WriteString(" The new version has taken no traffic.")
		}
	case strings.Contains(v.Reason, "long enough"):
		b.WriteString(": the new version has not taken traffic long enough to sample.")
	case len(pending) > 0:
		var leaning []string
		for _, r := range pending {
			switch {
			case r.Finding == FindingFewSamples:
				leaning = append(leaning, label(r.Name)+" not judged yet (too few samples)")
			case r.Leaning == LeaningPromote || r.Leaning == LeaningRollback:
				leaning = append(leaning, label(r.Name)+" leaning "+r.Leaning)
			default:
				leaning = append(leaning, label(r.Name)+" not decided either way yet")
			}
		}
		fmt.Fprintf(b, ": %s.", strings.Join(leaning, ", "))
	default:
		fmt.Fprintf(b, ": %s.", strings.TrimSuffix(v.Reason, "."))
	}
	if n := v.Needed; n != nil && !v.Final {
		fmt.Fprintf(b, " A promotion needs about %s more requests (about %s at the current rate", fmtRough(float64(n.Requests)), fmtRoughDuration(n.Seconds))
		if left := v.WindowSeconds - v.TrafficSeconds; n.Seconds > left && left > 0 {
			fmt.Fprintf(b, ", more than the %s left in the window", fmtDuration(left))
		}
		b.WriteString(").")
	}
	if nd := w.noData(); nd != "" {
		b.WriteString(" " + nd)
	}
}

// fmtDuration renders seconds of time: "45 s", "2 min 15 s", "1 h 5 min".
func fmtDuration(secs float64) string {
	s := int64(math.Round(secs))
	switch {
	case s < 60:
		return fmt.Sprintf("%d s", s)
	case s < 3600:
		if s%60 == 0 {
			return fmt.Sprintf("%d min", s/60)
		}
		return fmt.Sprintf("%d min %d s", s/60, s%60)
	}
	m := (s + 30) / 60
	if m%60 == 0 {
		return fmt.Sprintf("%d h", m/60)
	}
	return fmt.Sprintf("%d h %d min", m/60, m%60)
}

// fmtRough renders an estimate to two significant digits: "9,100".
func fmtRough(x float64) string {
	if x < 100 {
		return fmtCount(x)
	}
	unit := math.Pow(10, math.Floor(math.Log10(x))-1)
	return fmtCount(math.Round(x/unit) * unit)
}

// fmtRoughDuration renders an estimated time: seconds under a minute, whole
// minutes under an hour.
func fmtRoughDuration(secs float64) string {
	if secs < 60 || secs >= 3600 {
		return fmtDuration(secs)
	}
	return fmt.Sprintf("%d min", int(math.Round(secs/60)))
}

// fmtSig renders x with n significant digits, without trailing zeros, and
// with thousands separators (numbers of n digits or more are integers).
func fmtSig(x float64, n int) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	if x == 0 {
		return "0"
	}
	decimals := max(0, n-1-int(math.Floor(math.Log10(math.Abs(x)))))
	s := strconv.FormatFloat(x, 'f', decimals, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return thousands(s)
}

// thousands puts commas between the thousands of a number's integer part.
func thousands(s string) string {
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	intPart, frac, hasFrac := strings.Cut(s, ".")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if hasFrac {
		return sign + b.String() + "." + frac
	}
	return sign + b.String()
}

// fmtCount renders a count of events as a whole number.
func fmtCount(x float64) string {
	return thousands(strconv.FormatFloat(math.Round(x), 'f', 0, 64))
}

// fmtPct renders a ratio as a percentage with two significant digits.
func fmtPct(r float64) string { return fmtSig(100*r, 2) + "%" }

// fmtSignedPct renders a relative change: "+129%", "-3%".
func fmtSignedPct(r float64) string { return signed(fmtPct(math.Abs(r)), r) }

func signed(s string, x float64) string {
	if x < 0 {
		return "-" + s
	}
	return "+" + s
}

// fmtSeconds renders a duration measured in seconds: "212 ms", "1.5 s".
func fmtSeconds(x float64) string {
	switch a := math.Abs(x); {
	case a == 0:
		return "0 s"
	case a < 1e-3:
		return fmtSig(x*1e6, 3) + " µs"
	case a < 1:
		return fmtSig(x*1e3, 3) + " ms"
	case a < 60:
		return fmtSig(x, 3) + " s"
	}
	return fmtDuration(x)
}

// fmtBytes renders a size in bytes with decimal units.
func fmtBytes(x float64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	i := 0
	for math.Abs(x) >= 1000 && i < len(units)-1 {
		x /= 1000
		i++
	}
	return fmtSig(x, 3) + " " + units[i]
}

// fmtP renders a p-value.
func fmtP(p float64) string {
	if p < 1e-4 {
		return "p < 0.0001"
	}
	return "p = " + fmtSig(p, 2)
}

// fmtOdds renders exp(llr) as odds.
func fmtOdds(llr float64) string {
	v := math.Exp(llr)
	if v >= 1e6 {
		return "more than a million"
	}
	return fmtSig(v, 2)
}
