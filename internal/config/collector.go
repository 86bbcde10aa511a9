package config

import (
	"fmt"
	"os"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/vigilhq/vigil/collector/evidence"
)

// CollectorConfig is the `collector:` section: what a Vigil running as one
// of several collector replicas needs (docs/scaling.md).
type CollectorConfig struct {
	// Replica names this replica: every series it derives (span metrics,
	// service graph, log metrics, stream aggregation outputs) carries it as
	// the collector label, so that replicas forwarding to one store do not
	// interleave their counters. Empty (the default, and a single Vigil):
	// no label. --collector.replica overrides it; when neither is set, the
	// POD_NAME environment variable is used (the scaled Kubernetes overlay
	// sets it from the pod's name).
	Replica string `yaml:"replica"`
	// EvidenceForward sends the error logs and traces this replica keeps as
	// evidence to the store, whose verdicts quote them.
	EvidenceForward EvidenceForwardSection `yaml:"evidence_forward"`
}

// ReplicaEnv is the environment variable collector.replica defaults to.
const ReplicaEnv = "POD_NAME"

// DefaultReplica fills in collector.replica from $POD_NAME when it is not
// set. Only POD_NAME, which the Kubernetes manifests set explicitly: not
// HOSTNAME, which every shell has, so a Vigil on a laptop keeps writing
// exactly what it wrote before.
func (c *CollectorConfig) DefaultReplica() {
	if c.Replica == "" {
		c.Replica = os.Getenv(ReplicaEnv)
	}
}

// Validate checks the collector section.
func (c CollectorConfig) Validate() error {
	if !utf8.ValidString(c.Replica) {
		return fmt.Errorf("replica %q is not valid UTF-8", c.Replica)
	}
	if strings.TrimSpace(c.Replica) != c.Replica {
		return fmt.Errorf("replica %q has leading or trailing spaces", c.Replica)
	}
	if err := c.EvidenceForward.Validate(); err != nil {
		return fmt.Errorf("evidence_forward.%w", err)
	}
	return nil
}

// EvidenceForwardSection is collector.evidence_forward, decoded with
// Prometheus's decoder so that its HTTP client keys (authorization,
// basic_auth, tls_config, ...) mean what they do in remote_write.
type EvidenceForwardSection struct {
	evidence.ForwardConfig `yaml:",inline"`
}

// UnmarshalYAML decodes the block over the defaults, strictly.
func (e *EvidenceForwardSection) UnmarshalYAML(n *yaml.Node) error {
	fc := evidence.DefaultForwardConfig()
	if err := decodePrometheusYAML(n, &fc); err != nil {
		return err
	}
	e.ForwardConfig = fc
	return nil
}

// MarshalYAML renders the block for /api/v1/status/config (secrets hidden).
func (e EvidenceForwardSection) MarshalYAML() (any, error) { return e.ForwardConfig, nil }
