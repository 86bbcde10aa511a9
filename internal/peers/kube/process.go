package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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

// process is one control-plane program. It outlives a single test (the
// package shares the control plane), so it is not tied to a testing.T; the
// kernel kills it if the test binary dies first.
type process struct {
	name   string
	cmd    *exec.Cmd
	log    *os.File
	waited chan struct{}
	err    error
}

func (c *Cluster) start(name, bin string, args ...string) (*process, error) {
	log, err := os.Create(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		return nil, err
	}
	p := &process{name: name, log: log, waited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = c.Dir
	p.cmd.Stdout, p.cmd.Stderr = log, log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c.procs = append(c.procs, p)
	go func() {
		p.err = p.cmd.Wait()
		log.Close()
		close(p.waited)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.waited:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and kills the program after grace.
func (p *process) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.waited:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.waited
	}
}

// waitHTTP polls url until it answers 200 with a body containing want, the
// program exits or ctx ends. With c set, it trusts c's CA and sends its
// administrator token.
func waitHTTP(ctx context.Context, p *process, c *Cluster, url, want string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	var token string
	if c != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(c.CA)
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		token = c.AdminToken
	}
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), want) {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, body)
		} else {
			last = err.Error()
		}
		if p.exited() {
			return fmt.Errorf("%s exited: %v", p.name, p.err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer %s: %w (last: %s)", p.name, url, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freePorts returns n distinct free loopback ports.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
