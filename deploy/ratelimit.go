package deploy

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/common/model"
)

// rollbackLimiter rate-limits rollback actions: at most one rollback that
// succeeded per deployment, and a cool-down between two attempts on a
// service (and environment). A slot is reserved before the actors run, so
// that two verdicts reached at once cannot both act. It starts from the
// actions recorded in the store, so a restart does not reset it.
type rollbackLimiter struct {
	cooldown, retention time.Duration

	mu       sync.Mutex
	last     map[string]time.Time // service/environment → last attempt
	done     map[string]time.Time // deployment → rolled back at
	inflight map[string]bool      // deployment → being rolled back
}

func newRollbackLimiter(cooldown, retention time.Duration, recorded []Deployment) *rollbackLimiter {
	l := &rollbackLimiter{cooldown: cooldown, retention: retention, last: map[string]time.Time{}, done: map[string]time.Time{}, inflight: map[string]bool{}}
	for _, d := range recorded {
		for _, a := range d.Actions {
			if a.Refused != "" {
				continue
			}
			if k := serviceKey(d); a.At.After(l.last[k]) {
				l.last[k] = a.At
			}
			if a.OK {
				l.done[d.key()] = a.At
			}
		}
	}
	return l
}

func serviceKey(d Deployment) string { return d.Service + "\xff" + d.Environment }

// reserve takes the slot of a rollback of d at now, or says why not.
func (l *rollbackLimiter) reserve(d Deployment, now time.Time) (Refusal, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, t := range l.last {
		if now.Sub(t) >= l.cooldown {
			delete(l.last, k)
		}
	}
	for k, t := range l.done {
		if now.Sub(t) > l.retention {
			delete(l.done, k)
		}
	}
	if at, ok := l.done[d.key()]; ok || l.inflight[d.key()] {
		if !ok {
			return RefusedAlreadyRolledBack, fmt.Sprintf("refused: %s %s is being rolled back", d.Service, d.Version)
		}
		return RefusedAlreadyRolledBack, fmt.Sprintf("refused: %s %s was already rolled back at %s", d.Service, d.Version, at.UTC().Format(time.RFC3339))
	}
	if t, ok := l.last[serviceKey(d)]; ok {
		return RefusedCooldown, fmt.Sprintf("refused: %s was acted on at %s, less than deploy.rollback_cooldown (%s) ago",
			d.Service, t.UTC().Format(time.RFC3339), model.Duration(l.cooldown))
	}
	l.last[serviceKey(d)] = now
	l.inflight[d.key()] = true
	return "", ""
}

// check says why a rollback of d at now would be refused ("" when it
// would not), without reserving anything: what shadow mode records.
func (l *rollbackLimiter) check(d Deployment, now time.Time) (Refusal, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if at, ok := l.done[d.key()]; ok && now.Sub(at) <= l.retention {
		return RefusedAlreadyRolledBack, fmt.Sprintf("refused: %s %s was already rolled back at %s", d.Service, d.Version, at.UTC().Format(time.RFC3339))
	}
	if l.inflight[d.key()] {
		return RefusedAlreadyRolledBack, fmt.Sprintf("refused: %s %s is being rolled back", d.Service, d.Version)
	}
	if t, ok := l.last[serviceKey(d)]; ok && now.Sub(t) < l.cooldown {
		return RefusedCooldown, fmt.Sprintf("refused: %s was acted on at %s, less than deploy.rollback_cooldown (%s) ago",
			d.Service, t.UTC().Format(time.RFC3339), model.Duration(l.cooldown))
	}
	return "", ""
}

// settle ends the rollback of d reserved earlier; ok: an action succeeded.
func (l *rollbackLimiter) settle(d Deployment, ok bool, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.inflight, d.key())
	if ok {
		l.done[d.key()] = now
	}
}
