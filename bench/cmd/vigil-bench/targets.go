package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// target is a program under test: how to start it on loopback with its
// data in a directory, and where it takes writes and queries.
type target struct {
	name    string
	bin     string
	version string
	// args returns the command line for listen address addr and data dir.
	args func(addr, dir string) []string
	// writePath and readyPath are URL paths on addr.
	writePath, readyPath string
	// flush makes written data visible to queries (VictoriaMetrics buffers it).
	flush func(ctx context.Context, base string) error
}

func vigilTarget(bin string) target {
	return target{
		name: "Vigil", bin: bin, version: firstLine(exec.Command(bin, "version")),
		args: func(addr, dir string) []string {
			return []string{"serve", "--listen", addr, "--storage.path", dir,
				"--otlp.grpc.listen-address", "", "--otlp.http.listen-address", ""}
		},
		writePath: "/api/v1/write", readyPath: "/-/ready",
	}
}

func prometheusTarget(bin string) target {
	return target{
		name: "Prometheus", bin: bin, version: firstLine(exec.Command(bin, "--version")),
		args: func(addr, dir string) []string {
			cfg := filepath.Join(dir, "prometheus.yml")
			_ = os.WriteFile(cfg, []byte("global: {}\n"), 0o644)
			return []string{"--config.file=" + cfg, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
				"--web.listen-address=" + addr, "--web.enable-remote-write-receiver"}
		},
		writePath: "/api/v1/write", readyPath: "/-/ready",
	}
}

func victoriaMetricsTarget(bin string) target {
	// Debian's 1.79 prints nothing for -version; the package version says it.
	v := firstLine(exec.Command("dpkg-query", "-W", "-f", "${Version}", "victoria-metrics"))
	return target{
		name: "VictoriaMetrics", bin: bin, version: "victoria-metrics " + v,
		args: func(addr, dir string) []string {
			return []string{"-storageDataPath=" + dir, "-httpListenAddr=" + addr,
				// Data is visible to queries as soon as it is flushed, whatever its age.
				"-search.latencyOffset=0s", "-search.disableCache",
				// The verification queries select 1/metrics of all series at once.
				"-search.maxUniqueTimeseries=100000000", "-loggerLevel=WARN"}
		},
		writePath: "/api/v1/write", readyPath: "/health",
		flush: func(ctx context.Context, base string) error {
			return httpGet(ctx, base+"/internal/force_flush")
		},
	}
}

func firstLine(cmd *exec.Cmd) string {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// running is a started target.
type running struct {
	t      target
	addr   string
	cmd    *exec.Cmd
	logf   *os.File
	waited chan struct{}
}

func (r *running) base() string     { return "http://" + r.addr }
func (r *running) writeURL() string { return r.base() + r.t.writePath }
func (r *running) pid() int         { return r.cmd.Process.Pid }

// start runs t with its data in dir and waits until it is ready.
func start(ctx context.Context, t target, dir string) (*running, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	logf, err := os.Create(dir + ".log")
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	cmd := exec.Command(t.bin, t.args(addr, dir)...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", t.name, err)
	}
	r := &running{t: t, addr: addr, cmd: cmd, logf: logf, waited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(r.waited) }()
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case <-r.waited:
			return nil, fmt.Errorf("%s exited before it was ready; see %s", t.name, logf.Name())
		default:
		}
		if httpGet(ctx, r.base()+t.readyPath) == nil {
			return r, nil
		}
		if time.Now().After(deadline) {
			r.stop()
			return nil, fmt.Errorf("%s not ready within a minute; see %s", t.name, logf.Name())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM, waits up to 30 s, then kills.
func (r *running) stop() {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.waited:
	case <-time.After(30 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.waited
	}
	r.logf.Close()
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func httpGet(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
