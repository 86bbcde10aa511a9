// Package procstat reads a process's CPU time and memory from /proc, the
// way the benchmark harness measures programs it did not build.
package procstat

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat;
// it is 100 on every Linux architecture Go supports.
const clockTicks = 100

// Sample is a process's resource use at one moment.
type Sample struct {
	// CPU is user plus system time since the process started.
	CPU time.Duration
	// RSS is the resident set size now (VmRSS), HWM its peak so far (VmHWM), in bytes.
	RSS, HWM int64
}

// Read samples process pid.
func Read(pid int) (Sample, error) {
	return read(fmt.Sprintf("/proc/%d", pid))
}

func read(dir string) (Sample, error) {
	var s Sample
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return s, fmt.Errorf("read cpu time: %w", err)
	}
	if s.CPU, err = parseStat(stat); err != nil {
		return s, fmt.Errorf("parse %s/stat: %w", dir, err)
	}
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return s, fmt.Errorf("read memory: %w", err)
	}
	if s.RSS, s.HWM, err = parseStatus(status); err != nil {
		return s, fmt.Errorf("parse %s/status: %w", dir, err)
	}
	return s, nil
}

// parseStat reads utime and stime (fields 14 and 15) from /proc/<pid>/stat.
// The command name (field 2) is in parentheses and may hold spaces, so
// fields are counted from the last ')'.
func parseStat(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("no command name in %q", b)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	var ticks uint64
	for _, s := range f[11:13] {
		v, err := strconv.ParseUint(s, 10, 40) // 2^40 ticks: 348 years
		if err != nil {
			return 0, fmt.Errorf("cpu ticks %q: %w", s, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// parseStatus reads VmRSS and VmHWM (in kB) from /proc/<pid>/status.
func parseStatus(b []byte) (rss, hwm int64, err error) {
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		num, unit, _ := strings.Cut(strings.TrimSpace(val), " ")
		if unit != "kB" {
			return 0, 0, fmt.Errorf("%s: unit %q, want kB", key, unit)
		}
		kb, err := strconv.ParseUint(num, 10, 50) // 2^50 kB: a zettabyte
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", key, err)
		}
		if key == "VmRSS" {
			rss = int64(kb) << 10
		} else {
			hwm = int64(kb) << 10
		}
		found++
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("VmRSS and VmHWM not both present")
	}
	return rss, hwm, nil
}
