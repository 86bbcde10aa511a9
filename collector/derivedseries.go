package collector

import "errors"

// ReasonDerivedSeries is the "reason" label of a sample refused because it
// belongs to a series Vigil derives itself (span metrics, service graph,
// log metrics, deployment and verdict series) and its writer is not listed
// in ingest.accept_derived_series_from.
const ReasonDerivedSeries = "derived_series"

// ErrDerivedSeries is returned for a sample of a derived series from a
// writer that may not send them: the verdict and the generated rules trust
// these series, so a forged one could roll a good version back.
var ErrDerivedSeries = errors.New("series derived by Vigil")
