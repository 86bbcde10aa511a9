// Package evidence keeps the most recent error records of each service
// version — error log lines, error traces — in bounded in-memory rings, so
// that a deployment verdict can quote them. Memory is bounded twice: by
// the records kept per service version and by the number of service
// versions tracked (the least recently written is evicted).
package evidence

import (
	"container/list"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Key is a service version.
type Key struct {
	Service string
	Version string
}

// Rings keeps up to perKey recent records of type T for up to maxKeys keys.
type Rings[T any] struct {
	perKey, maxKeys int

	mu    sync.Mutex
	rings map[Key]*ring[T]
	lru   *list.List // of Key, most recently touched first

	name string
	// out, when set, receives every record added locally, for forwarding.
	out *Outbox

	evicted prometheus.Counter
	dropped prometheus.Counter
}

type ring[T any] struct {
	items   []stamped[T]
	next    int
	touched time.Time
	elem    *list.Element
}

type stamped[T any] struct {
	at        time.Time
	collector string // the replica that saw it, for records forwarded to this one
	item      T
}

// New creates rings. name labels the self-metrics (e.g. "error_logs").
func New[T any](name string, perKey, maxKeys int, reg prometheus.Registerer) *Rings[T] {
	r := &Rings[T]{
		name: name, perKey: max(perKey, 1), maxKeys: max(maxKeys, 1), rings: map[Key]*ring[T]{}, lru: list.New(),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_evidence_evicted_keys_total", Help: "Service versions whose recent records were evicted to make room for others.",
			ConstLabels: prometheus.Labels{"ring": name},
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_evidence_overwritten_records_total", Help: "Records overwritten by newer ones in a full ring.",
			ConstLabels: prometheus.Labels{"ring": name},
		}),
	}
	if reg != nil {
		reg.MustRegister(r.evicted, r.dropped)
	}
	return r
}

// Name is the ring's name ("error_logs", "error_traces").
func (r *Rings[T]) Name() string { return r.name }

// Forward sends every record added from now on to o as well.
func (r *Rings[T]) Forward(o *Outbox) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.out = o
}

// Add records item for key at time at (and queues it for forwarding when
// the rings forward).
func (r *Rings[T]) Add(key Key, at time.Time, item T) {
	if out := r.add(key, at, "", item); out != nil {
		out.push(r.name, key, at, item)
	}
}

// add keeps a record and returns where the rings forward to (nil: nowhere).
func (r *Rings[T]) add(key Key, at time.Time, collector string, item T) *Outbox {
	r.mu.Lock()
	defer r.mu.Unlock()
	rg, ok := r.rings[key]
	if !ok {
		if len(r.rings) >= r.maxKeys {
			r.evictOldest()
		}
		rg = &ring[T]{items: make([]stamped[T], 0, min(r.perKey, 16)), elem: r.lru.PushFront(key)}
		r.rings[key] = rg
	} else {
		r.lru.MoveToFront(rg.elem)
	}
	if at.After(rg.touched) {
		rg.touched = at
	}
	st := stamped[T]{at: at, collector: collector, item: item}
	if len(rg.items) < r.perKey {
		rg.items = append(rg.items, st)
		return r.out
	}
	rg.items[rg.next] = st
	rg.next = (rg.next + 1) % r.perKey
	r.dropped.Inc()
	return r.out
}

// evictOldest drops the key added to least recently.
func (r *Rings[T]) evictOldest() {
	back := r.lru.Back()
	if back == nil {
		return
	}
	delete(r.rings, r.lru.Remove(back).(Key))
	r.evicted.Inc()
}

// Record is an item with the time it was recorded and the key it belongs to.
type Record[T any] struct {
	At   time.Time
	Key  Key
	Item T
	// Collector is the replica that recorded it, when it was forwarded
	// from another Vigil ("" for a record of this one).
	Collector string
}

// Recent returns up to limit records, newest first, of service (all
// services when empty) and version (all versions when empty), recorded at
// or after since.
func (r *Rings[T]) Recent(service, version string, since time.Time, limit int) []Record[T] {
	r.mu.Lock()
	var out []Record[T]
	for k, rg := range r.rings {
		if (service != "" && k.Service != service) || (version != "" && k.Version != version) {
			continue
		}
		for _, s := range rg.items {
			if !s.at.Before(since) {
				out = append(out, Record[T]{At: s.at, Key: k, Item: s.item, Collector: s.collector})
			}
		}
	}
	r.mu.Unlock()
	slices.SortStableFunc(out, func(a, b Record[T]) int { return b.At.Compare(a.At) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// Len is the number of keys tracked.
func (r *Rings[T]) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.rings)
}
