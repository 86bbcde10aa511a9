package main

import (
	"fmt"
	"net/url"

	promconfig "github.com/prometheus/prometheus/config"
	"go.yaml.in/yaml/v3"

	"github.com/vigilhq/vigil/storage"
)

// RemoteWriteSection is Prometheus's `remote_write:` list, decoded by
// Prometheus's own config types: url, remote_timeout, headers, name,
// write_relabel_configs, basic_auth, authorization, oauth2, tls_config,
// proxy_url, queue_config, protobuf_message, send_native_histograms, ...
type RemoteWriteSection []*promconfig.RemoteWriteConfig

// UnmarshalYAML decodes the list strictly and checks it as Prometheus does.
func (r *RemoteWriteSection) UnmarshalYAML(n *yaml.Node) error {
	var list []*promconfig.RemoteWriteConfig
	if err := decodePrometheusYAML(n, &list); err != nil {
		return err
	}
	names := map[string]bool{}
	for i, rw := range list {
		if rw == nil {
			return fmt.Errorf("remote_write[%d] is empty", i)
		}
		if u := (*url.URL)(rw.URL.URL); u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("remote_write[%d]: url %q: scheme must be http or https", i, u)
		}
		if err := rw.HTTPClientConfig.Validate(); err != nil {
			return fmt.Errorf("remote_write[%d]: %w", i, err)
		}
		if rw.Name != "" {
			if names[rw.Name] {
				return fmt.Errorf("remote_write[%d]: found multiple remote write configs with job name %q", i, rw.Name)
			}
			names[rw.Name] = true
		}
	}
	*r = list
	return nil
}

// forwardConfig is what the forwarder applies (at start and on reload).
func (c Config) forwardConfig() storage.ForwardConfig {
	return storage.ForwardConfig{RemoteWrite: c.RemoteWrite, ExternalLabels: c.Global.ExternalLabels}
}
