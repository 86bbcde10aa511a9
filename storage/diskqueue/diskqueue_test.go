package diskqueue

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func open(t *testing.T, dir string, maxBytes, segBytes int64) *Queue {
	t.Helper()
	q, err := Open(Config{Dir: dir, MaxBytes: maxBytes, SegmentBytes: segBytes})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// drain reads and commits everything, returning the payloads in order.
func drain(t *testing.T, q *Queue) []string {
	t.Helper()
	var out []string
	for {
		rec, ok, err := q.Peek()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		out = append(out, string(rec.Payload))
		if err := q.Commit(rec); err != nil {
			t.Fatal(err)
		}
	}
}

func TestQueue(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, dir string)
	}{
		{"in order across segments", func(t *testing.T, dir string) {
			q := open(t, dir, 1<<20, 100)
			var want []string
			for i := range 50 {
				p := fmt.Sprintf("record-%02d", i)
				want = append(want, p)
				if err := q.Append([]byte(p)); err != nil {
					t.Fatal(err)
				}
			}
			if got := drain(t, q); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("got %v, want %v", got, want)
			}
			if q.Size() > 100 {
				t.Errorf("delivered segments were not removed: %d bytes left", q.Size())
			}
			if q.Pending() != 0 {
				t.Errorf("%d bytes pending after everything was delivered", q.Pending())
			}
		}},
		{"restart resumes after the last commit", func(t *testing.T, dir string) {
			q := open(t, dir, 1<<20, 64)
			for i := range 10 {
				_ = q.Append([]byte(fmt.Sprint(i)))
			}
			for range 4 {
				rec, _, _ := q.Peek()
				_ = q.Commit(rec)
			}
			rec, _, _ := q.Peek() // read, not committed: comes again
			if string(rec.Payload) != "4" {
				t.Fatalf("peek = %q", rec.Payload)
			}
			_ = q.Close()
			q = open(t, dir, 1<<20, 64)
			_ = q.Append([]byte("10"))
			if got := fmt.Sprint(drain(t, q)); got != "[4 5 6 7 8 9 10]" {
				t.Fatalf("after restart: %s", got)
			}
		}},
		{"torn record at a crash ends its segment", func(t *testing.T, dir string) {
			q := open(t, dir, 1<<20, 1<<10)
			_ = q.Append([]byte("whole"))
			_ = q.Append([]byte("torn-record"))
			_ = q.Close()
			seg := filepath.Join(dir, "00000001.seg")
			b, _ := os.ReadFile(seg)
			_ = os.WriteFile(seg, b[:len(b)-3], 0o644)
			q = open(t, dir, 1<<20, 1<<10)
			_ = q.Append([]byte("after"))
			if got := fmt.Sprint(drain(t, q)); got != "[whole after]" {
				t.Fatalf("got %s", got)
			}
		}},
		{"full queue drops the oldest segment and counts it", func(t *testing.T, dir string) {
			q := open(t, dir, 200, 100)
			for i := range 30 {
				_ = q.Append(bytes.Repeat([]byte{'a' + byte(i%26)}, 10))
			}
			if q.Size() > 200 {
				t.Errorf("size %d exceeds the limit", q.Size())
			}
			got := drain(t, q)
			if q.Dropped() == 0 || int(q.Dropped())+len(got) != 30 {
				t.Errorf("dropped %d + delivered %d != 30 appended", q.Dropped(), len(got))
			}
			if got[len(got)-1] != string(bytes.Repeat([]byte{'a' + 29%26}, 10)) {
				t.Errorf("the newest record was not kept: %v", got)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, t.TempDir()) })
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := Open(Config{Dir: t.TempDir(), MaxBytes: 10, SegmentBytes: 10}); err == nil {
		t.Error("a queue smaller than two segments was accepted")
	}
}

// FuzzReadSegment: any bytes on disk read as records or end the segment,
// never panic or allocate past the record limit.
func FuzzReadSegment(f *testing.F) {
	dir := f.TempDir()
	q, _ := Open(Config{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: 1 << 16})
	_ = q.Append([]byte("hello"))
	_ = q.Append([]byte(""))
	_ = q.Close()
	seed, _ := os.ReadFile(filepath.Join(dir, "00000001.seg"))
	f.Add(seed)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		var off int64
		for range 1000 {
			_, _, n, err := readRecord(r, off)
			if err != nil {
				return
			}
			off += n
		}
	})
}
