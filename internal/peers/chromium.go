package peers

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Browser is Debian's chromium, run headless once per page: a real browser
// renders Vigil's web UI (HTML, CSS, inline SVG) as a person's would.
type Browser struct {
	bin string
}

// Chromium finds chromium (`make peers` installs Debian's package); a
// missing browser skips the test, or fails it under CI=true.
func Chromium(t testing.TB) *Browser {
	t.Helper()
	return &Browser{bin: Binary(t, "chromium", "/usr/bin/chromium", "/usr/lib/chromium/chromium")}
}

// browserTimeout bounds one page load.
const browserTimeout = 90 * time.Second

// run starts a fresh headless browser (its own profile in a temporary
// directory: no state is shared between pages) with extra arguments and
// returns what it printed on stdout.
func (b *Browser) run(t testing.TB, extra ...string) []byte {
	t.Helper()
	profile, err := os.MkdirTemp("", "vigil-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(profile)
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--user-data-dir=" + profile,
	}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.bin, args...)
	// Chromium starts helper processes: stop them all with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", extra, err, tail(stderr.String(), 4000))
	}
	return stdout.Bytes()
}

// DumpDOM loads url and returns the document as the browser built it.
func (b *Browser) DumpDOM(t testing.TB, url string) string {
	t.Helper()
	return string(b.run(t, "--dump-dom", url))
}

// Screenshot loads url in a window of width × height and writes a PNG of
// it to path; it fails the test unless the PNG decodes to that size and
// shows more than one colour.
func (b *Browser) Screenshot(t testing.TB, url, path string, width, height int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(path)
	b.run(t, fmt.Sprintf("--window-size=%d,%d", width, height), "--screenshot="+path, url)
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("chromium wrote no screenshot of %s: %v", url, err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot of %s: %v", url, err)
	}
	if got := img.Bounds().Size(); got != (image.Point{X: width, Y: height}) {
		t.Errorf("screenshot of %s is %v, want %dx%d", url, got, width, height)
	}
	if uniform(img) {
		t.Errorf("screenshot of %s is a single colour: nothing was drawn", url)
	}
}

func uniform(img image.Image) bool {
	r := img.Bounds()
	first := img.At(r.Min.X, r.Min.Y)
	for y := r.Min.Y; y < r.Max.Y; y += 7 {
		for x := r.Min.X; x < r.Max.X; x += 7 {
			if img.At(x, y) != first {
				return false
			}
		}
	}
	return true
}
