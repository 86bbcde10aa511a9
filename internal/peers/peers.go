// Package peers starts the real programs Vigil's tests talk to — the Vigil
// binary itself, Debian's Prometheus, promtool, Alertmanager and
// VictoriaMetrics — on loopback, and cleans them up when the test ends.
//
// A missing peer skips the test on a developer machine and fails it when
// CI=true: CI never passes because a peer quietly was not there. `make peers`
// installs them.
package peers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// InCI reports whether the tests run in CI (CI=true), where nothing may be skipped for a missing peer.
func InCI() bool { return os.Getenv("CI") == "true" }

// Binary finds a peer program by name on PATH (or at one of the extra
// paths). When it is missing the test is skipped, or failed under CI.
func Binary(t testing.TB, name string, extra ...string) string {
	t.Helper()
	SkipIfShort(t)
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range extra {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("peer %q is not installed; run `make peers`", name)
	if InCI() {
		t.Fatal(msg + " (CI=true: a missing peer fails the run)")
	}
	t.Skip(msg)
	return ""
}

// SkipIfShort skips a test that runs real programs under `go test -short`
// (`make test-unit`), the quick loop that needs no peers. CI never passes
// -short: there every peer test runs or fails.
func SkipIfShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		if InCI() {
			t.Fatal("-short under CI=true: CI runs every test against its real peers")
		}
		t.Skip("-short: this test runs real programs (make test runs it)")
	}
}

// FreeAddr returns a free loopback address like 127.0.0.1:41234.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Process is a peer program started by a test.
type Process struct {
	Name string
	Addr string // host:port it serves on, if any
	Dir  string // its working/data directory

	cmd    *exec.Cmd
	logs   *lockedBuffer
	waited chan struct{}
	err    error
}

// URL is the base URL of the process's HTTP server.
func (p *Process) URL() string { return "http://" + p.Addr }

// Logs returns what the process wrote to stdout and stderr so far.
func (p *Process) Logs() string { return p.logs.String() }

// Start runs bin with args, logging its output into the test log on failure.
func Start(t testing.TB, name, bin string, args ...string) *Process {
	t.Helper()
	return StartIn(t, t.TempDir(), name, bin, args...)
}

// StartIn runs bin in dir.
func StartIn(t testing.TB, dir, name, bin string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: name, Dir: dir, logs: &lockedBuffer{}, waited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Stdout = p.logs
	p.cmd.Stderr = p.logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.waited)
	}()
	t.Cleanup(func() {
		_ = p.Stop(10 * time.Second) // exits 143 or -1 when signalled: not a failure here
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", name, tail(p.Logs(), 8000))
		}
	})
	return p
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill kills the process with SIGKILL and waits for it.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.waited
}

// Stop sends SIGTERM and waits up to grace before killing; it returns the exit error.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.waited:
		return p.err
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.waited:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.waited
	}
	return p.err
}

// Wait waits for the process to exit on its own.
func (p *Process) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.waited:
		if p.cmd.ProcessState == nil {
			return -1, p.err
		}
		return p.cmd.ProcessState.ExitCode(), nil
	case <-time.After(timeout):
		return -1, fmt.Errorf("%s still running after %s", p.Name, timeout)
	}
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.waited:
		return true
	default:
		return false
	}
}

// WaitHTTP polls url until it answers 200, the process exits, or timeout passes.
func (p *Process) WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if p.Exited() {
			t.Fatalf("%s exited before %s answered: %v\n%s", p.Name, url, p.err, tail(p.Logs(), 4000))
		}
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not answer %s within %s (last: %s)\n%s", p.Name, url, timeout, last, tail(p.Logs(), 4000))
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var (
	buildOnce sync.Once
	builtPath string
	buildErr  error
)

// VigilBinary builds the vigil command once per test binary and returns
// its path. The binary lives at one path per checkout, replaced atomically,
// so test runs do not leave a binary behind each time.
func VigilBinary(t testing.TB) string {
	t.Helper()
	SkipIfShort(t)
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("vigil-test-%x", fnv64(root)))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			buildErr = err
			return
		}
		tmp, err := os.CreateTemp(dir, "vigil-*")
		if err != nil {
			buildErr = err
			return
		}
		tmp.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp.Name(), "./cmd/vigil")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			os.Remove(tmp.Name())
			buildErr = fmt.Errorf("go build ./cmd/vigil: %v\n%s", err, out)
			return
		}
		builtPath = filepath.Join(dir, "vigil")
		if err := os.Rename(tmp.Name(), builtPath); err != nil {
			buildErr = err
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtPath
}

func fnv64(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// moduleRoot finds the directory holding go.mod, from this source file.
func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the module root")
	}
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above " + file)
		}
		dir = parent
	}
}

// Vigil is a running `vigil serve`.
type Vigil struct {
	*Process
	DataDir  string
	OTLPGRPC string // host:port of OTLP/gRPC
	OTLPHTTP string // host:port of OTLP/HTTP
}

// StartVigil runs `vigil serve` on a free loopback port with its data in a
// temporary directory (or dataDir when given) and waits until it is ready.
// extra holds further flags.
func StartVigil(t testing.TB, dataDir string, extra ...string) *Vigil {
	t.Helper()
	return StartVigilAt(t, VigilAddrs{}, dataDir, extra...)
}

// VigilAddrs are the addresses a Vigil listens on; empty ones are picked free.
type VigilAddrs struct{ HTTP, OTLPGRPC, OTLPHTTP string }

// StartVigilAt is StartVigil on given addresses, e.g. to restart a Vigil
// where its clients expect it: StartVigilAt(t, v.Addrs(), v.DataDir).
func StartVigilAt(t testing.TB, addrs VigilAddrs, dataDir string, extra ...string) *Vigil {
	t.Helper()
	bin := VigilBinary(t)
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []*string{&addrs.HTTP, &addrs.OTLPGRPC, &addrs.OTLPHTTP} {
		if *a == "" {
			*a = FreeAddr(t)
		}
	}
	args := append([]string{"serve", "--listen", addrs.HTTP, "--storage.path", dataDir, "--log.level", "debug",
		"--otlp.grpc.listen-address", addrs.OTLPGRPC, "--otlp.http.listen-address", addrs.OTLPHTTP}, extra...)
	p := StartIn(t, dataDir, "vigil", bin, args...)
	p.Addr = addrs.HTTP
	p.WaitHTTP(t, p.URL()+"/-/ready", 60*time.Second)
	return &Vigil{Process: p, DataDir: dataDir, OTLPGRPC: addrs.OTLPGRPC, OTLPHTTP: addrs.OTLPHTTP}
}

// Addrs are the addresses v listens on.
func (v *Vigil) Addrs() VigilAddrs {
	return VigilAddrs{HTTP: v.Addr, OTLPGRPC: v.OTLPGRPC, OTLPHTTP: v.OTLPHTTP}
}

// Prometheus is a running Debian prometheus.
type Prometheus struct {
	*Process
}

// StartPrometheus runs Prometheus on a free port with the configuration
// file that config returns for that address (and extra flags), and waits
// until it is ready.
func StartPrometheus(t testing.TB, config func(addr string) string, extra ...string) *Prometheus {
	t.Helper()
	bin := Binary(t, "prometheus")
	dir := t.TempDir()
	addr := FreeAddr(t)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(config(addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{
		"--config.file=" + cfgPath,
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr,
	}, extra...)
	p := StartIn(t, dir, "prometheus", bin, args...)
	p.Addr = addr
	p.WaitHTTP(t, p.URL()+"/-/ready", 60*time.Second)
	return &Prometheus{Process: p}
}

// Version runs `bin --version` and returns its first line.
func Version(bin string) string {
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return line
}

// GoBinary finds a Go tool installed by `make peers` (go install): on PATH,
// in $GOBIN, or in $(go env GOPATH)/bin.
func GoBinary(t testing.TB, name string) string {
	t.Helper()
	var extra []string
	if d := os.Getenv("GOBIN"); d != "" {
		extra = append(extra, filepath.Join(d, name))
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, d := range filepath.SplitList(strings.TrimSpace(string(out))) {
			extra = append(extra, filepath.Join(d, "bin", name))
		}
	}
	return Binary(t, name, extra...)
}

// Alertmanager is a running Debian prometheus-alertmanager.
type Alertmanager struct {
	*Process
}

// StartAlertmanager runs Alertmanager on a free loopback port with the
// given configuration (alertmanager.yml), clustering off, and waits until it
// is ready.
func StartAlertmanager(t testing.TB, config string) *Alertmanager {
	t.Helper()
	bin := Binary(t, "prometheus-alertmanager")
	dir := t.TempDir()
	addr := FreeAddr(t)
	cfgPath := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	p := StartIn(t, dir, "alertmanager", bin,
		"--config.file="+cfgPath, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=debug")
	p.Addr = addr
	p.WaitHTTP(t, p.URL()+"/-/ready", 60*time.Second)
	return &Alertmanager{Process: p}
}

// VictoriaMetrics is a running Debian victoria-metrics (single node).
type VictoriaMetrics struct {
	*Process
	DataDir string
}

// StartVictoriaMetrics runs VictoriaMetrics on addr (a free port when
// empty) with its data in dataDir (a temporary directory when empty),
// answering queries without its default 30s latency offset, and waits until
// it is ready. Restarting on the same addr and dataDir continues its data.
func StartVictoriaMetrics(t testing.TB, addr, dataDir string) *VictoriaMetrics {
	t.Helper()
	bin := Binary(t, "victoria-metrics")
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	if addr == "" {
		addr = FreeAddr(t)
	}
	p := StartIn(t, dataDir, "victoria-metrics", bin,
		"-storageDataPath="+dataDir, "-httpListenAddr="+addr,
		"-search.latencyOffset=0s", "-search.disableCache", "-retentionPeriod=100y",
		"-dedup.minScrapeInterval=1ms") // a batch re-sent after a lost reply counts once
	p.Addr = addr
	p.WaitHTTP(t, p.URL()+"/health", 60*time.Second)
	return &VictoriaMetrics{Process: p, DataDir: dataDir}
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// OtelcolLB is a running OpenTelemetry Collector with the loadbalancing
// exporter (`make peers` builds it from internal/peers/otelcol/builder.yaml).
type OtelcolLB struct {
	*Process
	// OTLPGRPC is the host:port its OTLP/gRPC receiver listens on.
	OTLPGRPC string
}

// StartOtelcolLB runs the collector with an OTLP/gRPC receiver on a free
// port and the loadbalancing exporter routing traces and logs by trace ID
// over backends (OTLP/gRPC host:port) with the static resolver, as the
// OpenTelemetry documentation recommends in front of span-metrics and
// service-graph processors. Failed sends to a backend are retried quickly,
// so that a backend restarting for a few seconds loses nothing.
func StartOtelcolLB(t testing.TB, backends []string) *OtelcolLB {
	t.Helper()
	bin := GoBinary(t, "otelcol-loadbalancing")
	dir := t.TempDir()
	grpc := FreeAddr(t)
	var hosts strings.Builder
	for _, b := range backends {
		fmt.Fprintf(&hosts, "          - %s\n", b)
	}
	cfg := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
exporters:
  load_balancing:
    routing_key: traceID
    protocol:
      otlp:
        tls:
          insecure: true
        timeout: 5s
        # The exporter splits every batch it receives across the backends;
        # batching per backend again keeps requests as large as they came.
        sending_queue:
          enabled: true
          sizer: items
          queue_size: 100000
          batch:
            flush_timeout: 200ms
            min_size: 2000
        retry_on_failure:
          enabled: true
          initial_interval: 100ms
          max_interval: 1s
          max_elapsed_time: 120s
    resolver:
      static:
        hostnames:
%sservice:
  telemetry:
    logs:
      level: info
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [load_balancing]
    logs:
      receivers: [otlp]
      exporters: [load_balancing]
`, grpc, hosts.String())
	path := filepath.Join(dir, "otelcol.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := StartIn(t, dir, "otelcol-loadbalancing", bin, "--config", path)
	p.Addr = grpc
	deadline := time.Now().Add(60 * time.Second)
	for {
		if p.Exited() {
			t.Fatalf("otelcol-loadbalancing exited: %v\n%s", p.err, tail(p.Logs(), 4000))
		}
		if c, err := net.DialTimeout("tcp", grpc, time.Second); err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("otelcol-loadbalancing did not listen on %s within 60s\n%s", grpc, tail(p.Logs(), 4000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return &OtelcolLB{Process: p, OTLPGRPC: grpc}
}
