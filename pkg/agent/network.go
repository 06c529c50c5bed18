package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kasa-io/kasa/pkg/component"
	"github.com/kasa-io/kasa/pkg/pki"
)

// ConflistName is the CNI configuration file kasa writes.
const ConflistName = "10-kasa.conflist"

// PodNetwork gives this node's pods their network: once the controller
// manager has given the node its pod CIDR, it writes a CNI configuration of
// the upstream bridge, host-local and portmap plugins for that range, and
// turns on the kernel settings pods need.
type PodNetwork struct {
	// PodCIDR returns the node's pod range, or an error while it has none.
	PodCIDR func(ctx context.Context) (string, error)
	ConfDir string
	// IPAMDir is where host-local keeps its leases.
	IPAMDir string
	// Sysctl writes a kernel setting (/proc/sys/...); replaced in tests.
	Sysctl func(path, value string) error
}

var _ component.Component = (*PodNetwork)(nil)

// Name implements component.Component.
func (n *PodNetwork) Name() string { return "pod-network" }

// Run implements component.Component.
func (n *PodNetwork) Run(ctx context.Context, ready func()) error {
	var cidr string
	err := pollReady(ctx, func(ctx context.Context) error {
		c, err := n.PodCIDR(ctx)
		cidr = c
		return err
	}, nil)
	if err != nil || ctx.Err() != nil {
		return err
	}
	for _, s := range [][2]string{
		{"net/ipv4/ip_forward", "1"},
		{"net/bridge/bridge-nf-call-iptables", "1"},
		{"net/bridge/bridge-nf-call-ip6tables", "1"},
	} {
		if err := n.Sysctl(s[0], s[1]); err != nil {
			return fmt.Errorf("kernel setting %s: %w (is br_netfilter available? see kasa check-config)", s[0], err)
		}
	}
	conf, err := Conflist(cidr, n.IPAMDir)
	if err != nil {
		return err
	}
	if err := pki.WriteFile(filepath.Join(n.ConfDir, ConflistName), conf, 0o644); err != nil {
		return err
	}
	ready()
	<-ctx.Done()
	return nil
}

// Conflist is the CNI configuration for a node whose pods live in cidr.
func Conflist(cidr, ipamDir string) ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "kasa",
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      "cni0",
				"isGateway":   true,
				"ipMasq":      true,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": cidr}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": ipamDir,
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// WriteSysctl sets a kernel setting through /proc/sys.
func WriteSysctl(path, value string) error {
	return os.WriteFile(filepath.Join("/proc/sys", path), []byte(value), 0o644)
}
