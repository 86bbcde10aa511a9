package deploy

import (
	"context"
	"log/slog"
	"time"

	"github.com/vigilhq/vigil/catalog"
)

const (
	// selectorChecksPerRound bounds the services checked each interval (two
	// instant queries each): a big catalog is checked round-robin.
	selectorChecksPerRound = 20
	// selectorMisses is how many checks in a row a selector must match
	// nothing before the warning is logged.
	selectorMisses = 3
)

// WatchSelectors warns, in the log, about the catalog services whose
// selector matches none of the span metrics their service sends — a
// namespace no sender sets, an environment spelled differently — which
// leaves their verdict signals, rules and panels selecting nothing. It
// checks a few services every interval, warns once a selector has missed
// selectorMisses checks in a row, and again only after it matched. It
// returns when ctx ends.
func WatchSelectors(ctx context.Context, cat *catalog.Catalog, q catalog.Querier, interval time.Duration, logger *slog.Logger) {
	if cat == nil || len(cat.Services) == 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	misses := make([]int, len(cat.Services))
	next := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for range min(selectorChecksPerRound, len(cat.Services)) {
			i := next
			next = (next + 1) % len(cat.Services)
			qctx, cancel := context.WithTimeout(ctx, interval)
			m, err := catalog.CheckSelector(qctx, cat.Services[i], q)
			cancel()
			switch {
			case err != nil:
				logger.Debug("Checking a catalog selector failed", "service", cat.Services[i].Name, "err", err)
			case m == nil:
				misses[i] = 0
			default:
				misses[i]++
				if misses[i] == selectorMisses {
					logger.Warn("A catalog selector matches no span metrics of its service", "service", m.Service.Name,
						"environment", m.Service.Environment, "selector", "{"+m.Selector+"}", "problem", m.String())
				}
			}
		}
	}
}
