package procstat

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want time.Duration
		err  string
	}{
		{"plain", "4242 (vigil) S 1 4242 4242 0 -1 4194560 2301 0 0 0 250 37 0 0 20 0 9 0 1234 100 200", 2870 * time.Millisecond, ""},
		{"name with spaces and parens", "7 (a b) c)) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 1 1 1", 30 * time.Millisecond, ""},
		{"truncated", "7 (x) R 1 2 3", 0, "fields after the command name"},
		{"no name", "garbage", 0, "no command name"},
		{"not a number", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 x 2 0", 0, "cpu ticks"},
		{"negative", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 -5 2 0", 0, "cpu ticks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %v, want error containing %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		rss, hwm int64
		err      string
	}{
		{"both", "Name:\tvigil\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t9\n", 100 << 20, 200 << 20, ""},
		{"missing HWM", "VmRSS:\t 1 kB\n", 0, 0, "not both present"},
		{"other unit", "VmRSS:\t 1 MB\nVmHWM:\t 1 kB\n", 0, 0, "unit"},
		{"negative", "VmRSS:\t -1 kB\nVmHWM:\t 1 kB\n", 0, 0, "VmRSS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rss, hwm, err := parseStatus([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %v, want error containing %q", err, tt.err)
				}
				return
			}
			if err != nil || rss != tt.rss || hwm != tt.hwm {
				t.Fatalf("got %d %d %v, want %d %d", rss, hwm, err, tt.rss, tt.hwm)
			}
		})
	}
}

// TestReadSelf reads this test process: it has used some CPU, and its
// peak is at least its current resident size, which grows when it touches
// 64 MiB.
func TestReadSelf(t *testing.T) {
	before, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	after, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after.CPU <= 0 || after.HWM < after.RSS || after.RSS < before.RSS+32<<20 {
		t.Fatalf("before %+v after %+v: want CPU > 0, HWM >= RSS, RSS grown by the 64 MiB touched", before, after)
	}
	_ = buf[len(buf)-1]
	if _, err := Read(1 << 30); err == nil {
		t.Fatal("reading a process that does not exist succeeded")
	}
}

// FuzzParse feeds arbitrary /proc contents to both parsers: they never
// panic, and what they accept is never negative.
func FuzzParse(f *testing.F) {
	f.Add([]byte("4242 (vigil) S 1 4242 4242 0 -1 4194560 2301 0 0 0 250 37 0 0 20 0 9 0 1234 100 200"))
	f.Add([]byte("VmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, err := parseStat(b); err == nil && d < 0 {
			t.Fatalf("negative CPU time %v from %q", d, b)
		}
		if rss, hwm, err := parseStatus(b); err == nil && (rss < 0 || hwm < 0) {
			t.Fatalf("negative memory %d %d from %q", rss, hwm, b)
		}
	})
}
