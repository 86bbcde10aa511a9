package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/vigilhq/vigil/deploy/verdict"
)

// StoreLimits bound what the store keeps.
type StoreLimits struct {
	// Retention is how long a deployment (by its start) and a verdict (by
	// when it was reached) are kept. The newest deployment of each service
	// and environment is kept however old: it is the current one.
	Retention time.Duration
	// MaxDeployments is the most deployments kept, and the most verdicts;
	// beyond, the oldest go first.
	MaxDeployments int
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// DefaultStoreLimits are the limits of deploy.DefaultConfig.
func DefaultStoreLimits() StoreLimits {
	c := DefaultConfig()
	return StoreLimits{Retention: time.Duration(c.Retention), MaxDeployments: c.MaxDeployments}
}

// Store keeps deployments and final verdicts in an append-only JSON-lines
// file (deployments.jsonl under the storage path), replayed at start. Each
// line is written and synced before the request that caused it is answered.
// The store is bounded (StoreLimits): records beyond the limits are dropped
// from memory at once and from the file when it is compacted (Compact
// rewrites it with one line per record kept).
//
// Writers hold fileMu across the file's I/O; readers only take mu, which is
// never held across I/O, so a slow disk does not hold up a listing.
type Store struct {
	fileMu sync.Mutex // serialises writes to f (and compaction)
	f      *os.File
	lines  int // lines in the file

	path   string
	limits StoreLimits
	logger *slog.Logger

	mu       sync.Mutex
	byID     map[string]*Deployment
	byKey    map[string]*Deployment
	order    []*Deployment // by StartedAt
	verdicts []verdict.Verdict
}

type storeLine struct {
	Deployment *Deployment      `json:"deployment,omitempty"`
	Verdict    *verdict.Verdict `json:"verdict,omitempty"`
}

// OpenStore opens (creating) the store in dir. A torn last line (a crash
// mid-write) is skipped and logged. Records beyond limits are dropped and
// the file compacted when it holds many more lines than records.
func OpenStore(dir string, limits StoreLimits, logger *slog.Logger) (*Store, error) {
	if limits.Retention <= 0 || limits.MaxDeployments <= 0 {
		d := DefaultStoreLimits()
		if limits.Retention <= 0 {
			limits.Retention = d.Retention
		}
		if limits.MaxDeployments <= 0 {
			limits.MaxDeployments = d.MaxDeployments
		}
	}
	if limits.Now == nil {
		limits.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create deployments dir %s: %w", dir, err)
	}
	s := &Store{path: filepath.Join(dir, "deployments.jsonl"), limits: limits, logger: logger, byID: map[string]*Deployment{}, byKey: map[string]*Deployment{}}
	// A compaction interrupted before its rename leaves a temporary file.
	_ = os.Remove(s.path + ".tmp")
	b, err := os.ReadFile(s.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", s.path, err)
	}
	// A torn last line (no newline) is cut off so that the next record
	// starts on a line of its own.
	if i := bytes.LastIndexByte(b, '\n'); i < len(b)-1 {
		logger.Warn("Dropping a torn last line of the deployments file", "file", s.path, "bytes", len(b)-i-1)
		b = b[:i+1]
		if err := os.Truncate(s.path, int64(len(b))); err != nil {
			return nil, fmt.Errorf("truncate torn line of %s: %w", s.path, err)
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		s.lines++
		var l storeLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			logger.Warn("Skipping an unreadable line of the deployments file", "file", s.path, "line", n, "err", err)
			continue
		}
		if l.Deployment != nil {
			s.put(l.Deployment)
		}
		if l.Verdict != nil {
			s.verdicts = append(s.verdicts, *l.Verdict)
		}
	}
	if s.f, err = os.OpenFile(s.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		return nil, fmt.Errorf("open %s: %w", s.path, err)
	}
	if err := s.Compact(); err != nil {
		_ = s.f.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the file.
func (s *Store) Close() error {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	return s.f.Close()
}

func (s *Store) put(d *Deployment) {
	if old, ok := s.byID[d.ID]; ok {
		*old = *d
		return
	}
	// The same service, environment and version deployed again (a rollback
	// to it) is another deployment; byKey points at the newest.
	if old, ok := s.byKey[d.key()]; !ok || !old.StartedAt.After(d.StartedAt) {
		s.byKey[d.key()] = d
	}
	s.byID[d.ID] = d
	i, _ := slices.BinarySearchFunc(s.order, d, func(a, b *Deployment) int { return a.StartedAt.Compare(b.StartedAt) })
	s.order = slices.Insert(s.order, i, d)
	for len(s.order) > s.limits.MaxDeployments {
		s.remove(s.order[0])
	}
}

func (s *Store) remove(d *Deployment) {
	delete(s.byID, d.ID)
	if i := slices.Index(s.order, d); i >= 0 {
		s.order = slices.Delete(s.order, i, i+1)
	}
	if s.byKey[d.key()] == d {
		delete(s.byKey, d.key())
		// An older deployment of the same version (one it redeployed) is
		// the newest of its key now.
		for i := len(s.order) - 1; i >= 0; i-- {
			if o := s.order[i]; o.key() == d.key() {
				s.byKey[d.key()] = o
				break
			}
		}
	}
}

// redeployLocked reports whether an event for old's service, environment
// and version starting at start is a new deployment of that version rather
// than news of old: another version of the service was deployed after old
// (so this one rolls back to it, or ships it again), and the event does not
// name old's start. The caller holds mu.
func (s *Store) redeployLocked(old *Deployment, start time.Time) bool {
	if start.Equal(old.StartedAt) {
		return false
	}
	for i := len(s.order) - 1; i >= 0 && s.order[i].StartedAt.After(old.StartedAt); i-- {
		if o := s.order[i]; o.Service == old.Service && o.Environment == old.Environment && o.Version != old.Version {
			return true
		}
	}
	return false
}

// prune drops what the limits no longer allow; it reports whether it did.
func (s *Store) prune(now time.Time) bool {
	cut := now.Add(-s.limits.Retention)
	n, nv := len(s.order), len(s.verdicts)
	newest := map[string]*Deployment{}
	for _, d := range s.order {
		newest[d.Service+"\xff"+d.Environment] = d // order is by start: the last wins
	}
	var drop []*Deployment
	for _, d := range s.order {
		if d.StartedAt.Before(cut) && newest[d.Service+"\xff"+d.Environment] != d {
			drop = append(drop, d)
		}
	}
	for _, d := range drop {
		s.remove(d)
	}
	s.verdicts = slices.DeleteFunc(s.verdicts, func(v verdict.Verdict) bool { return v.EvaluatedAt.Before(cut) })
	if over := len(s.verdicts) - s.limits.MaxDeployments; over > 0 {
		s.verdicts = slices.Clone(s.verdicts[over:])
	}
	s.trimHistoryLocked()
	return len(s.order) != n || len(s.verdicts) != nv
}

// verdictsWithHistory is how many of the newest verdicts keep their
// signals' per-step history; older ones keep the rest of their evidence
// (a history is tens of kilobytes: 10,000 of them would be hundreds of MB).
const verdictsWithHistory = 500

// trimHistoryLocked drops the per-step history of all but the newest
// verdictsWithHistory verdicts. The caller holds mu.
func (s *Store) trimHistoryLocked() {
	for i := len(s.verdicts) - verdictsWithHistory - 1; i >= 0; i-- {
		v := &s.verdicts[i]
		if !hasHistory(*v) {
			continue
		}
		sigs := slices.Clone(v.Signals) // the slice may be shared with a job's copy
		for j := range sigs {
			sigs[j].History = nil
		}
		v.Signals = sigs
	}
}

func hasHistory(v verdict.Verdict) bool {
	for _, sg := range v.Signals {
		if len(sg.History) > 0 {
			return true
		}
	}
	return false
}

// Compact drops the records beyond the limits and, when the file holds
// many more lines than records (updates of a deployment, dropped records),
// rewrites it with one line per record kept: to a temporary file, synced,
// then renamed over the old one. Hook.Run calls it periodically.
func (s *Store) Compact() error {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	s.mu.Lock()
	s.prune(s.limits.Now())
	live := len(s.order) + len(s.verdicts)
	if s.lines <= 2*live+100 {
		s.mu.Unlock()
		return nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, d := range s.order {
		if err := enc.Encode(storeLine{Deployment: d}); err != nil {
			s.mu.Unlock()
			return fmt.Errorf("encode deployment record: %w", err)
		}
	}
	for i := range s.verdicts {
		if err := enc.Encode(storeLine{Verdict: &s.verdicts[i]}); err != nil {
			s.mu.Unlock()
			return fmt.Errorf("encode verdict record: %w", err)
		}
	}
	s.mu.Unlock()
	// Only fileMu is held from here: readers go on while the file is written.
	tmp := s.path + ".tmp"
	if err := writeSynced(tmp, buf.Bytes()); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, s.path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("compact %s: %w", s.path, err)
	}
	if d, err := os.Open(filepath.Dir(s.path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("reopen %s after compaction: %w", s.path, err)
	}
	_ = s.f.Close()
	s.logger.Info("Compacted the deployments file", "file", s.path, "lines_before", s.lines, "lines", live)
	s.f, s.lines = f, live
	return nil
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

// append writes and syncs one line; the caller holds fileMu.
func (s *Store) append(l storeLine) error {
	b, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("encode deployment record: %w", err)
	}
	if _, err := s.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", s.path, err)
	}
	s.lines++
	return nil
}

// Record stores d. An event for a service, environment and version already
// recorded updates that deployment (a pipeline's started then finished
// events) and keeps its ID and start — unless another version of the
// service was deployed since and the event names another start: then it is
// a new deployment of that version (a rollback to it). created reports a
// new deployment.
func (s *Store) Record(d Deployment) (rec Deployment, created bool, err error) {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	s.mu.Lock()
	old, ok := s.byKey[d.key()]
	if ok && s.redeployLocked(old, d.StartedAt) {
		ok = false
	}
	var m Deployment
	if ok {
		m = *old
		m.Actions = slices.Clone(m.Actions)
		m.WouldAct = slices.Clone(m.WouldAct)
		merge(&m, d)
	}
	s.mu.Unlock()
	if ok {
		if err := s.append(storeLine{Deployment: &m}); err != nil {
			return m, false, err
		}
		s.mu.Lock()
		if cur, still := s.byID[m.ID]; still {
			*cur = m
		}
		s.mu.Unlock()
		return m, false, nil
	}
	if err := s.append(storeLine{Deployment: &d}); err != nil {
		return d, false, err
	}
	nd := d
	s.mu.Lock()
	s.put(&nd)
	s.mu.Unlock()
	return d, true, nil
}

// merge fills old with what the newer event adds.
func merge(old *Deployment, n Deployment) {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	keep := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	// What identifies the deployment (and labels its series) is kept from
	// the first event; its state follows the latest.
	keep(&old.Namespace, n.Namespace)
	keep(&old.PreviousVersion, n.PreviousVersion)
	keep(&old.Pipeline, n.Pipeline)
	keep(&old.Commit, n.Commit)
	keep(&old.Strategy, n.Strategy)
	set(&old.Status, n.Status)
	set(&old.URL, n.URL)
	if n.FinishedAt != nil {
		old.FinishedAt = n.FinishedAt
	}
}

// AddAction records an action taken (or refused) for deployment id.
func (s *Store) AddAction(id string, a ActionRecord) error { return s.addRecord(id, a, false) }

// AddWouldAct records an action a verdict called for and Vigil did not
// perform (shadow mode, ...) for deployment id.
func (s *Store) AddWouldAct(id string, a ActionRecord) error { return s.addRecord(id, a, true) }

func (s *Store) addRecord(id string, a ActionRecord, would bool) error {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	s.mu.Lock()
	d, ok := s.byID[id]
	var m Deployment
	if ok {
		m = *d
		m.Actions = slices.Clone(m.Actions)
		m.WouldAct = slices.Clone(m.WouldAct)
		if would {
			m.WouldAct = append(m.WouldAct, a)
		} else {
			m.Actions = append(m.Actions, a)
		}
	}
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("no deployment %s", id)
	}
	if err := s.append(storeLine{Deployment: &m}); err != nil {
		return err
	}
	s.mu.Lock()
	if cur, still := s.byID[id]; still {
		*cur = m
	}
	s.mu.Unlock()
	return nil
}

// Get returns a deployment by ID.
func (s *Store) Get(id string) (Deployment, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.byID[id]
	if !ok {
		return Deployment{}, false
	}
	return *d, true
}

// List returns deployments newest first, of service and environment when
// given, at most limit (all when limit <= 0).
func (s *Store) List(service, environment string, limit int) []Deployment {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Deployment
	for i := len(s.order) - 1; i >= 0; i-- {
		d := s.order[i]
		if (service != "" && d.Service != service) || (environment != "" && d.Environment != environment) {
			continue
		}
		out = append(out, *d)
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out
}

// Latest returns the newest deployment of service (and environment when given).
func (s *Store) Latest(service, environment string) (Deployment, bool) {
	l := s.List(service, environment, 1)
	if len(l) == 0 {
		return Deployment{}, false
	}
	return l[0], true
}

// Current returns the newest deployment of every service and environment
// (at most StoreLimits.MaxDeployments: the store holds no more).
func (s *Store) Current() []Deployment {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	var out []Deployment
	for i := len(s.order) - 1; i >= 0; i-- {
		d := s.order[i]
		k := d.Service + "\xff" + d.Environment
		if !seen[k] {
			seen[k] = true
			out = append(out, *d)
		}
	}
	return out
}

// AddVerdict records a final verdict.
func (s *Store) AddVerdict(v verdict.Verdict) error {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	if err := s.append(storeLine{Verdict: &v}); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.verdicts = append(s.verdicts, v)
	if over := len(s.verdicts) - s.limits.MaxDeployments; over > 0 {
		s.verdicts = slices.Clone(s.verdicts[over:])
	}
	s.trimHistoryLocked()
	return nil
}

// Verdicts returns final verdicts newest first, of service when given.
func (s *Store) Verdicts(service string, limit int) []verdict.Verdict {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []verdict.Verdict
	for i := len(s.verdicts) - 1; i >= 0; i-- {
		if service != "" && s.verdicts[i].Service != service {
			continue
		}
		out = append(out, s.verdicts[i])
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out
}

// Verdict returns the final verdict with the given ID.
func (s *Store) Verdict(id string) (verdict.Verdict, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.verdicts) - 1; i >= 0; i-- {
		if s.verdicts[i].ID == id {
			return s.verdicts[i], true
		}
	}
	return verdict.Verdict{}, false
}
