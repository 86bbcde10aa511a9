package deploy

import (
	"context"
	"fmt"

	"github.com/vigilhq/vigil/catalog"
	"github.com/vigilhq/vigil/deploy/verdict"
)

// DryRunner is an Actor that can tell, without changing anything, what its
// rollback would act on and whether it would refuse (its safety check: the
// target no longer runs the condemned version). Shadow mode records it.
type DryRunner interface {
	DryRun(ctx context.Context, svc catalog.Service, d Deployment, v verdict.Verdict) (target string, err error)
}

// wouldAct records with the deployment what each of the service's actors
// would have done with a rollback verdict that is not acted on (shadow
// mode, a watch's regression without rollback.after_promotion, ...), and
// whether it would have been refused: by the rate limits, because the
// verdict relies on request signals, or by the actor's own dry run. Nothing
// is called. why says why nothing was done.
func (h *Hook) wouldAct(j *job, svc catalog.Service, v verdict.Verdict, why string) {
	if j.deploymentID == "" {
		h.logger.Info("Rollback verdict not acted on", "service", v.Service, "version", v.Version, "verdict", v.ID, "why", why)
		return
	}
	d, ok := h.store.Get(j.deploymentID)
	if !ok {
		return
	}
	now := h.now()
	limit, limitMsg := h.limiter.check(d, now)
	actors := h.applicable(svc)
	var recs []ActionRecord
	if len(actors) == 0 {
		recs = append(recs, ActionRecord{Kind: "none", Message: fmt.Sprintf("%s; no rollback action is configured (rollback.kubernetes, rollback.webhook): Vigil would only report", why)})
	}
	for _, a := range actors {
		rec := ActionRecord{Kind: a.Kind()}
		switch {
		case !j.mayAct:
			rec.Refused = RefusedRequestSignals
			rec.Message = "would be refused: the verdict relies on signals the verify request brought"
		case limit != "":
			rec.Refused = limit
			rec.Message = "would be " + limitMsg
		default:
			rec.Message = fmt.Sprintf("would roll %s back from %s to %s", d.Service, d.Version, first(d.PreviousVersion, v.Baseline))
			if dr, ok := a.(DryRunner); ok {
				ctx, cancel := context.WithTimeout(h.ctx, actionTimeout)
				target, err := dr.DryRun(ctx, svc, d, v)
				cancel()
				rec.Target = target
				switch {
				case Refused(err):
					rec.Refused, rec.Message = RefusedTargetVersion, "would be refused: "+err.Error()
				case err != nil:
					rec.Message += " (its dry run failed: " + err.Error() + ")"
				}
			}
		}
		rec.Message = why + "; " + rec.Message
		recs = append(recs, rec)
	}
	for _, rec := range recs {
		rec.At, rec.Verdict, rec.Principal = now.UTC(), v.ID, j.principal
		h.logger.Info("Rollback verdict not acted on", "kind", rec.Kind, "target", rec.Target, "service", v.Service, "version", v.Version,
			"verdict", v.ID, "would_be_refused", rec.Refused, "why", rec.Message)
		if err := h.store.AddWouldAct(j.deploymentID, rec); err != nil {
			h.logger.Error("Recording what the rollback would have done failed", "err", err)
		}
	}
}
