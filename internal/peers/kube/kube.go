// Package kube starts a real Kubernetes control plane for Vigil's tests: etcd,
// kube-apiserver and kube-controller-manager, built from the Go module proxy
// by `make peers` (the nested module internal/peers/kubebuild pins them), on
// free loopback ports with their state in a temporary directory.
//
// The API server authenticates a test administrator by token and authorizes
// with RBAC; the controller-manager runs the Deployment, ReplicaSet,
// ServiceAccount (and its tokens), garbage-collector and Namespace
// controllers, so rollouts make real ReplicaSets and revision history. No
// kubelet runs: pods stay Pending, which the rollback tests do not need.
//
// A test package starts one control plane for all its tests (Shared) and
// stops it in TestMain (StopShared); each test works in its own namespace.
package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/vigilhq/vigil/internal/peers"
)

// Version is the Kubernetes release `make peers` builds.
const Version = "v1.37.2"

// Programs are the control-plane programs, by name.
var Programs = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kubectl"}

// Controllers are the controllers kube-controller-manager runs: rollouts of
// Deployments (ReplicaSets and their revisions), StatefulSets and DaemonSets
// (ControllerRevisions), service accounts and their tokens, and the clean-up
// of deleted namespaces and owned objects.
var Controllers = []string{"deployment", "replicaset", "statefulset", "daemonset", "serviceaccount", "serviceaccount-token", "garbagecollector", "namespace"}

// Binaries are the paths of the programs a Cluster runs.
type Binaries struct {
	Etcd, APIServer, ControllerManager, Kubectl string
}

// Cluster is a running control plane.
type Cluster struct {
	// Host is the API server's URL, https://127.0.0.1:port.
	Host string
	// CAFile and CA are the certificate authority of the API server's serving certificate.
	CAFile string
	CA     []byte
	// AdminToken authenticates a member of system:masters.
	AdminToken string
	// Kubeconfig is a kubeconfig file for the administrator.
	Kubeconfig string
	// Dir holds the state, certificates and logs.
	Dir string
	// StartedIn is how long the control plane took to become ready.
	StartedIn time.Duration

	bins  Binaries
	procs []*process
}

// RESTConfig is a client configuration for the administrator.
func (c *Cluster) RESTConfig() *rest.Config {
	return &rest.Config{
		Host:            c.Host,
		BearerToken:     c.AdminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CA},
		QPS:             100,
		Burst:           200,
		UserAgent:       "vigil-test",
	}
}

// TokenConfig is a client configuration that authenticates with token.
func (c *Cluster) TokenConfig(token string) *rest.Config {
	rc := c.RESTConfig()
	rc.BearerToken = token
	return rc
}

// Client is a typed client for the administrator.
func (c *Cluster) Client(t testing.TB) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// Kubectl runs the kubectl `make peers` built, as the administrator, with
// stdin as its standard input, and returns its standard output; a failure
// fails the test with kubectl's error output.
func (c *Cluster) Kubectl(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	out, err := c.KubectlErr(stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// KubectlErr is Kubectl returning the error (with kubectl's error output).
func (c *Cluster) KubectlErr(stdin string, args ...string) (string, error) {
	cmd := exec.Command(c.bins.Kubectl, append([]string{"--kubeconfig", c.Kubeconfig, "--cache-dir", filepath.Join(c.Dir, "kubectl-cache")}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// Namespace creates a namespace with a unique name derived from the test's
// (and the given labels) and deletes it when the test ends.
func (c *Cluster) Namespace(t testing.TB, labels map[string]string) string {
	t.Helper()
	name := strings.ToLower(t.Name())
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, name)
	if len(name) > 50 {
		name = name[:50]
	}
	name = strings.Trim(name, "-") + "-" + rand.String(5)
	cs := c.Client(t)
	ctx := context.Background()
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		err := cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return name
}

// FindBinaries looks for the programs `make peers` installs: in $GOBIN and
// $(go env GOPATH)/bin first (where `make peers` puts them, ahead of an older
// kubectl on PATH), then on PATH. It names the first one missing.
func FindBinaries() (Binaries, error) {
	var dirs []string
	if d := os.Getenv("GOBIN"); d != "" {
		dirs = append(dirs, d)
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, d := range filepath.SplitList(strings.TrimSpace(string(out))) {
			dirs = append(dirs, filepath.Join(d, "bin"))
		}
	}
	find := func(name string) (string, error) {
		for _, d := range dirs {
			p := filepath.Join(d, name)
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				return p, nil
			}
		}
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		return "", fmt.Errorf("%s is not installed: `make peers` builds etcd, kube-apiserver, kube-controller-manager and kubectl %s into $(go env GOPATH)/bin (about 15 minutes the first time on 2 cores, seconds after)", name, Version)
	}
	var b Binaries
	var err error
	for _, f := range []struct {
		name string
		dst  *string
	}{{"etcd", &b.Etcd}, {"kube-apiserver", &b.APIServer}, {"kube-controller-manager", &b.ControllerManager}, {"kubectl", &b.Kubectl}} {
		if *f.dst, err = find(f.name); err != nil {
			return b, err
		}
	}
	return b, nil
}

var shared struct {
	once    sync.Once
	mu      sync.Mutex
	cluster *Cluster
	missing error
	err     error
}

// Shared returns the test binary's control plane, starting it on first use.
// Missing programs skip the test, or fail it when CI=true. The package's
// TestMain must call StopShared after m.Run.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	peers.SkipIfShort(t)
	shared.once.Do(func() {
		bins, err := FindBinaries()
		if err != nil {
			shared.missing = err
			return
		}
		dir, err := os.MkdirTemp("", "vigil-kube-")
		if err != nil {
			shared.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c, err := Start(ctx, dir, bins)
		shared.mu.Lock()
		shared.cluster, shared.err = c, err
		shared.mu.Unlock()
		if err != nil {
			os.RemoveAll(dir)
		}
	})
	if shared.missing != nil {
		if peers.InCI() {
			t.Fatalf("%v (CI=true: a missing peer fails the run)", shared.missing)
		}
		t.Skip(shared.missing.Error())
	}
	if shared.err != nil {
		t.Fatalf("start the Kubernetes control plane: %v", shared.err)
	}
	return shared.cluster
}

// StartForTest starts a control plane for the test alone, stopped when it
// ends: for a package that needs one in a single test and has no TestMain.
// Missing programs skip the test, or fail it when CI=true.
func StartForTest(t testing.TB) *Cluster {
	t.Helper()
	peers.SkipIfShort(t)
	bins, err := FindBinaries()
	if err != nil {
		if peers.InCI() {
			t.Fatalf("%v (CI=true: a missing peer fails the run)", err)
		}
		t.Skip(err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, t.TempDir(), bins)
	if err != nil {
		t.Fatalf("start the Kubernetes control plane: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Kubernetes control plane logs:%s", c.logTails())
		}
		c.Stop()
	})
	return c
}

// StopShared stops the shared control plane, if one was started, and
// removes its directory.
func StopShared() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cluster != nil {
		shared.cluster.Stop()
		os.RemoveAll(shared.cluster.Dir)
		shared.cluster = nil
	}
}

// Start runs etcd, kube-apiserver and kube-controller-manager with their
// state in dir and returns once the API server is ready and the controllers
// run (the default ServiceAccount exists). On error, what was started is
// stopped and the error carries the end of the programs' logs.
func Start(ctx context.Context, dir string, bins Binaries) (c *Cluster, err error) {
	begin := time.Now()
	c = &Cluster{Dir: dir, bins: bins}
	defer func() {
		if err != nil {
			c.Stop()
			err = fmt.Errorf("%w%s", err, c.logTails())
			c = nil
		}
	}()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return c, err
	}
	pki, err := writePKI(filepath.Join(dir, "pki"))
	if err != nil {
		return c, err
	}
	c.CAFile, c.CA, c.AdminToken = pki.caFile, pki.caPEM, pki.adminToken

	ports, err := freePorts(4)
	if err != nil {
		return c, err
	}
	etcdClient := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	etcdPeer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	etcd, err := c.start("etcd", bins.Etcd,
		"--name=default", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdClient, "--advertise-client-urls="+etcdClient,
		"--listen-peer-urls="+etcdPeer, "--initial-advertise-peer-urls="+etcdPeer,
		"--initial-cluster=default="+etcdPeer,
		"--unsafe-no-fsync", "--log-level=warn")
	if err != nil {
		return c, err
	}
	if err := waitHTTP(ctx, etcd, nil, etcdClient+"/health", `"health":"true"`); err != nil {
		return c, err
	}

	c.Host = fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	api, err := c.start("kube-apiserver", bins.APIServer,
		"--etcd-servers="+etcdClient,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", ports[2]),
		"--tls-cert-file="+pki.servingCert, "--tls-private-key-file="+pki.servingKey,
		"--cert-dir="+filepath.Join(dir, "apiserver"),
		"--token-auth-file="+pki.tokenFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+pki.saPublic, "--service-account-signing-key-file="+pki.saPrivate,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--endpoint-reconciler-type=none",
		"--profiling=false")
	if err != nil {
		return c, err
	}
	if err := waitHTTP(ctx, api, c, c.Host+"/readyz", "ok"); err != nil {
		return c, err
	}
	c.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kubeconfig(c.Host, c.CAFile, c.AdminToken), 0o600); err != nil {
		return c, err
	}

	kcm, err := c.start("kube-controller-manager", bins.ControllerManager,
		"--kubeconfig="+c.Kubeconfig,
		"--authentication-kubeconfig="+c.Kubeconfig, "--authorization-kubeconfig="+c.Kubeconfig,
		"--controllers="+strings.Join(Controllers, ","),
		"--service-account-private-key-file="+pki.saPrivate, "--root-ca-file="+c.CAFile,
		"--leader-elect=false",
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", ports[3]),
		"--cert-dir="+filepath.Join(dir, "controller-manager"))
	if err != nil {
		return c, err
	}
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		return c, err
	}
	// The ServiceAccount controller creates "default" in every namespace:
	// once it exists in "default", the controllers run.
	for {
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			break
		}
		if kcm.exited() {
			return c, errors.New("kube-controller-manager exited")
		}
		select {
		case <-ctx.Done():
			return c, fmt.Errorf("kube-controller-manager: the default ServiceAccount did not appear: %w (last: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	c.StartedIn = time.Since(begin)
	return c, nil
}

// Stop stops the programs, newest first.
func (c *Cluster) Stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].stop(10 * time.Second)
	}
	c.procs = nil
}

// Logs returns the output of a program (etcd, kube-apiserver, kube-controller-manager).
func (c *Cluster) Logs(name string) string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, name+".log"))
	return string(b)
}

func (c *Cluster) logTails() string {
	var b strings.Builder
	for _, p := range c.procs {
		fmt.Fprintf(&b, "\n--- %s ---\n%s", p.name, tail(c.Logs(p.name), 3000))
	}
	return b.String()
}

func kubeconfig(host, caFile, token string) []byte {
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`, host, caFile, token)
}
