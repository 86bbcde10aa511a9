package hotpath_test

import (
	"github.com/vigilhq/vigil/collector"
	"github.com/vigilhq/vigil/collector/hotpath"
	"github.com/vigilhq/vigil/collector/logmetrics"
	"github.com/vigilhq/vigil/collector/loki"
	"github.com/vigilhq/vigil/collector/otlp"
	"github.com/vigilhq/vigil/collector/remotewrite"
	"github.com/vigilhq/vigil/collector/spanmetrics"
	"github.com/vigilhq/vigil/storage"
)

// The receivers take what they write to as interfaces they define; the
// hot path, storage and the derived-metrics generators are what cmd/vigil
// hands them. These fail to compile when a signature drifts, instead of a
// capability silently disappearing behind a type assertion (as the series
// cache once could).
var (
	_ remotewrite.Storage     = (*hotpath.Pipeline)(nil)
	_ remotewrite.SeriesCache = (*hotpath.Pipeline)(nil)
	_ otlp.MetricsStorage     = (*hotpath.Pipeline)(nil)
	_ hotpath.Storage         = (*storage.Storage)(nil)
	_ collector.MetadataSink  = (*storage.MetadataStore)(nil)
	_ loki.Observer           = (*logmetrics.Generator)(nil)
	_ otlp.LogsConsumer       = (*logmetrics.Generator)(nil)
	_ otlp.TracesConsumer     = (*spanmetrics.Generator)(nil)
)
