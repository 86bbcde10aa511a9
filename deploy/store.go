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

	"github.com/vigilhq/vigil/deploy/verdict"
)

// Store keeps deployments and final verdicts in an append-only JSON-lines
// file (deployments.jsonl under the storage path), replayed at start. Each
// line is written and synced before the request that caused it is answered.
type Store struct {
	mu       sync.Mutex
	f        *os.File
	path     string
	byID     map[string]*Deployment
	byKey    map[string]*Deployment
	order    []*Deployment // by StartedAt
	verdicts []verdict.Verdict
	maxKept  int
}

type storeLine struct {
	Deployment *Deployment      `json:"deployment,omitempty"`
	Verdict    *verdict.Verdict `json:"verdict,omitempty"`
}

// OpenStore opens (creating) the store in dir. A torn last line (a crash
// mid-write) is skipped and logged.
func OpenStore(dir string, logger *slog.Logger) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create deployments dir %s: %w", dir, err)
	}
	s := &Store{path: filepath.Join(dir, "deployments.jsonl"), byID: map[string]*Deployment{}, byKey: map[string]*Deployment{}, maxKept: 10000}
	b, err := os.ReadFile(s.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", s.path, err)
	}
	// A torn last line (no newline) is cut off so that the next record
	// starts on a line of its own.
	if i := bytes.LastIndexByte(b, '\n'); i < len(b)-1 {
		if logger != nil {
			logger.Warn("Dropping a torn last line of the deployments file", "file", s.path, "bytes", len(b)-i-1)
		}
		b = b[:i+1]
		if err := os.Truncate(s.path, int64(len(b))); err != nil {
			return nil, fmt.Errorf("truncate torn line of %s: %w", s.path, err)
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		var l storeLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			if logger != nil {
				logger.Warn("Skipping an unreadable line of the deployments file", "file", s.path, "line", n, "err", err)
			}
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
	return s, nil
}

// Close closes the file.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.Close()
}

func (s *Store) put(d *Deployment) {
	if old, ok := s.byID[d.ID]; ok {
		*old = *d
		return
	}
	s.byID[d.ID] = d
	s.byKey[d.key()] = d
	i, _ := slices.BinarySearchFunc(s.order, d, func(a, b *Deployment) int { return a.StartedAt.Compare(b.StartedAt) })
	s.order = slices.Insert(s.order, i, d)
}

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
	return nil
}

// Record stores d. An event for a service, environment and version already
// recorded updates that deployment (a pipeline's started then finished
// events) and keeps its ID and start; created reports a new deployment.
func (s *Store) Record(d Deployment) (rec Deployment, created bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.byKey[d.key()]; ok {
		m := *old
		merge(&m, d)
		if err := s.append(storeLine{Deployment: &m}); err != nil {
			return m, false, err
		}
		*old = m
		return m, false, nil
	}
	if err := s.append(storeLine{Deployment: &d}); err != nil {
		return d, false, err
	}
	nd := d
	s.put(&nd)
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

// AddAction records an action taken for deployment id.
func (s *Store) AddAction(id string, a ActionRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.byID[id]
	if !ok {
		return fmt.Errorf("no deployment %s", id)
	}
	m := *d
	m.Actions = append(slices.Clone(m.Actions), a)
	if err := s.append(storeLine{Deployment: &m}); err != nil {
		return err
	}
	*d = m
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

// Current returns the newest deployment of every service and environment.
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.append(storeLine{Verdict: &v}); err != nil {
		return err
	}
	s.verdicts = append(s.verdicts, v)
	if len(s.verdicts) > s.maxKept {
		s.verdicts = slices.Clone(s.verdicts[len(s.verdicts)-s.maxKept:])
	}
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
