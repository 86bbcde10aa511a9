// Package diskqueue is a bounded, persistent FIFO of byte records in a
// directory: what a forwarder has not delivered yet waits on disk, not in
// memory, survives a restart, and is read back in order.
//
// Records are appended to segment files (00000001.seg, ...); each record is
//
//	length uint32 | crc32c uint32 | enqueued unix ms int64 | payload
//
// and the reader's position (segment, offset) is kept in the file "cursor",
// replaced atomically after each delivery: delivery is at least once, a
// record read but not yet committed before a crash is read again. A record
// whose checksum does not match (a torn write at a crash) ends its segment.
// When the segments exceed MaxBytes the oldest segment is dropped and its
// records are counted as dropped.
package diskqueue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	headerSize = 16
	// MaxRecordBytes bounds one record.
	MaxRecordBytes = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Config sizes a queue.
type Config struct {
	Dir string
	// MaxBytes bounds the queue on disk; beyond it the oldest segment is dropped.
	MaxBytes int64
	// SegmentBytes is the size at which a new segment is started.
	SegmentBytes int64
}

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("queue directory must be set")
	case c.SegmentBytes <= 0 || c.MaxBytes < 2*c.SegmentBytes:
		return fmt.Errorf("queue max size %d must be at least two segments of %d bytes", c.MaxBytes, c.SegmentBytes)
	}
	return nil
}

// Queue is safe for one writer side and one reader side used concurrently.
type Queue struct {
	cfg Config

	mu       sync.Mutex
	segs     []int // segment numbers on disk, oldest first
	w        *os.File
	wSeg     int
	wOff     int64
	size     int64 // bytes in all segments
	rSeg     int   // cursor: next record to read
	rOff     int64
	dropped  int64 // records dropped because the queue was full
	notify   chan struct{}
	closed   bool
	segBytes map[int]int64
}

// Open opens or creates the queue in cfg.Dir.
func Open(cfg Config) (*Queue, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create queue dir %s: %w", cfg.Dir, err)
	}
	q := &Queue{cfg: cfg, notify: make(chan struct{}, 1), segBytes: map[int]int64{}}
	entries, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("read queue dir %s: %w", cfg.Dir, err)
	}
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".seg"); ok {
			if i, err := strconv.Atoi(n); err == nil {
				info, err := e.Info()
				if err != nil {
					return nil, err
				}
				q.segs = append(q.segs, i)
				q.segBytes[i] = info.Size()
				q.size += info.Size()
			}
		}
	}
	slices.Sort(q.segs)
	q.rSeg, q.rOff = 1, 0
	if len(q.segs) > 0 {
		q.rSeg = q.segs[0]
	}
	if b, err := os.ReadFile(q.cursorPath()); err == nil {
		var seg int
		var off int64
		if _, err := fmt.Sscanf(string(b), "%d %d", &seg, &off); err == nil && seg >= q.rSeg {
			q.rSeg, q.rOff = seg, off
		}
	}
	// Appends go to a new segment: the last one may end in a torn record.
	q.wSeg = 1
	if len(q.segs) > 0 {
		q.wSeg = q.segs[len(q.segs)-1] + 1
	}
	if q.rSeg > q.wSeg {
		q.rSeg, q.rOff = q.wSeg, 0
	}
	if err := q.openWriter(); err != nil {
		return nil, err
	}
	return q, nil
}

func (q *Queue) segPath(n int) string { return filepath.Join(q.cfg.Dir, fmt.Sprintf("%08d.seg", n)) }
func (q *Queue) cursorPath() string   { return filepath.Join(q.cfg.Dir, "cursor") }

func (q *Queue) openWriter() error {
	f, err := os.OpenFile(q.segPath(q.wSeg), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open queue segment: %w", err)
	}
	q.w, q.wOff = f, 0
	if !slices.Contains(q.segs, q.wSeg) {
		q.segs = append(q.segs, q.wSeg)
	}
	return nil
}

// Append adds a record. It returns once the record is written to the
// operating system (it survives a crash of Vigil, and reaches the disk at
// the next Sync).
func (q *Queue) Append(payload []byte) error {
	if len(payload) > MaxRecordBytes {
		return fmt.Errorf("record of %d bytes exceeds the queue's limit of %d", len(payload), MaxRecordBytes)
	}
	rec := make([]byte, headerSize+len(payload))
	binary.LittleEndian.PutUint32(rec[0:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(rec[4:], crc32.Checksum(payload, castagnoli))
	binary.LittleEndian.PutUint64(rec[8:], uint64(time.Now().UnixMilli()))
	copy(rec[headerSize:], payload)

	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return errors.New("queue is closed")
	}
	if q.wOff > 0 && q.wOff+int64(len(rec)) > q.cfg.SegmentBytes {
		if err := q.w.Sync(); err != nil {
			return fmt.Errorf("sync queue segment: %w", err)
		}
		_ = q.w.Close()
		q.wSeg++
		if err := q.openWriter(); err != nil {
			return err
		}
	}
	if _, err := q.w.Write(rec); err != nil {
		return fmt.Errorf("append to queue: %w", err)
	}
	q.wOff += int64(len(rec))
	q.segBytes[q.wSeg] += int64(len(rec))
	q.size += int64(len(rec))
	for q.size > q.cfg.MaxBytes && len(q.segs) > 1 {
		q.dropOldestLocked()
	}
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return nil
}

// dropOldestLocked removes the oldest segment, moving the cursor past it.
func (q *Queue) dropOldestLocked() {
	old := q.segs[0]
	n := countRecords(q.segPath(old), 0)
	if old == q.rSeg {
		n = countRecords(q.segPath(old), q.rOff)
	} else if old < q.rSeg {
		n = 0
	}
	q.dropped += int64(n)
	_ = os.Remove(q.segPath(old))
	q.size -= q.segBytes[old]
	delete(q.segBytes, old)
	q.segs = q.segs[1:]
	if q.rSeg <= old {
		q.rSeg, q.rOff = q.segs[0], 0
		_ = q.saveCursorLocked()
	}
}

// Record is one queued record.
type Record struct {
	Payload  []byte
	Enqueued time.Time
	next     position
}

type position struct {
	seg int
	off int64
}

// Peek returns the oldest undelivered record without removing it, or
// ok=false when the queue is empty.
func (q *Queue) Peek() (rec Record, ok bool, err error) {
	q.mu.Lock()
	seg, off := q.rSeg, q.rOff
	q.mu.Unlock()
	for {
		f, err := os.Open(q.segPath(seg))
		if errors.Is(err, os.ErrNotExist) {
			q.mu.Lock()
			advanced := q.advancePastMissingLocked(seg)
			seg, off = q.rSeg, q.rOff
			q.mu.Unlock()
			if !advanced {
				return Record{}, false, nil
			}
			continue
		}
		if err != nil {
			return Record{}, false, fmt.Errorf("open queue segment: %w", err)
		}
		payload, ts, n, rerr := readRecord(f, off)
		f.Close()
		if rerr == nil {
			return Record{Payload: payload, Enqueued: time.UnixMilli(ts), next: position{seg, off + n}}, true, nil
		}
		// End of this segment (or a torn record): move on if a newer one exists.
		q.mu.Lock()
		if seg < q.wSeg {
			q.rSeg, q.rOff = seg+1, 0
			_ = q.saveCursorLocked()
			seg, off = q.rSeg, q.rOff
			q.mu.Unlock()
			q.removeDelivered()
			continue
		}
		q.mu.Unlock()
		return Record{}, false, nil
	}
}

func (q *Queue) advancePastMissingLocked(seg int) bool {
	for _, s := range q.segs {
		if s > seg {
			q.rSeg, q.rOff = s, 0
			return true
		}
	}
	return false
}

// Commit marks rec delivered.
func (q *Queue) Commit(rec Record) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if rec.next.seg < q.rSeg || (rec.next.seg == q.rSeg && rec.next.off <= q.rOff) {
		return nil // the segment was dropped meanwhile
	}
	q.rSeg, q.rOff = rec.next.seg, rec.next.off
	return q.saveCursorLocked()
}

// removeDelivered deletes segments wholly before the cursor.
func (q *Queue) removeDelivered() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.segs) > 0 && q.segs[0] < q.rSeg {
		_ = os.Remove(q.segPath(q.segs[0]))
		q.size -= q.segBytes[q.segs[0]]
		delete(q.segBytes, q.segs[0])
		q.segs = q.segs[1:]
	}
}

func (q *Queue) saveCursorLocked() error {
	tmp := q.cursorPath() + ".tmp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%d %d\n", q.rSeg, q.rOff)), 0o644); err != nil {
		return fmt.Errorf("save queue cursor: %w", err)
	}
	return os.Rename(tmp, q.cursorPath())
}

// Wait returns a channel that receives after an Append.
func (q *Queue) Wait() <-chan struct{} { return q.notify }

// Size is the bytes the queue's segments take on disk.
func (q *Queue) Size() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.size
}

// Pending is the bytes of records not delivered yet.
func (q *Queue) Pending() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	delivered := int64(0)
	for _, s := range q.segs {
		switch {
		case s < q.rSeg:
			delivered += q.segBytes[s]
		case s == q.rSeg:
			delivered += q.rOff
		}
	}
	return q.size - delivered
}

// Dropped is how many records were dropped because the queue was full.
func (q *Queue) Dropped() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped
}

// Sync flushes appended records to disk.
func (q *Queue) Sync() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	return q.w.Sync()
}

// Close syncs and closes the queue.
func (q *Queue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	err := q.w.Sync()
	return errors.Join(err, q.w.Close())
}

// readRecord reads the record at off: payload, enqueue time and its size.
func readRecord(r io.ReaderAt, off int64) ([]byte, int64, int64, error) {
	var h [headerSize]byte
	if _, err := r.ReadAt(h[:], off); err != nil {
		return nil, 0, 0, err
	}
	n := binary.LittleEndian.Uint32(h[0:])
	if n > MaxRecordBytes {
		return nil, 0, 0, fmt.Errorf("record length %d exceeds %d: corrupt segment", n, MaxRecordBytes)
	}
	payload := make([]byte, n)
	if _, err := r.ReadAt(payload, off+headerSize); err != nil {
		return nil, 0, 0, err
	}
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(h[4:]) {
		return nil, 0, 0, errors.New("record checksum mismatch: torn or corrupt segment")
	}
	return payload, int64(binary.LittleEndian.Uint64(h[8:])), headerSize + int64(n), nil
}

// countRecords counts the readable records of a segment from off.
func countRecords(path string, off int64) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	for {
		_, _, size, err := readRecord(f, off)
		if err != nil {
			return n
		}
		n++
		off += size
	}
}
