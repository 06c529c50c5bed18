package agent

import (
	"encoding/json"

	"github.com/kasa-io/kasa/pkg/netguard"
)

// ConflistName is the CNI configuration file kasa writes.
const ConflistName = "10-kasa.conflist"

// Conflist is the CNI configuration for a node whose pods live in subnet:
// the upstream bridge plugin (cni0, the pods' gateway) with host-local
// addresses, and portmap for hostPort. flannel routes the subnet between
// nodes and masquerades traffic that leaves the cluster network. With
// policyNamespaces (the network policy controller's file of namespaces
// with a policy), kasa's plugin kasa-hold follows the bridge: it holds
// the new pods of those namespaces until their policies are in place.
func Conflist(subnet, ipamDir string, mtu int, policyNamespaces string) ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "kasa",
		"plugins": []any{
			map[string]any{
				"type":             "bridge",
				"bridge":           "cni0",
				"isGateway":        true,
				"isDefaultGateway": true,
				"hairpinMode":      true,
				"mtu":              mtu,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": subnet}}},
					"dataDir": ipamDir,
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	if policyNamespaces != "" {
		conf["plugins"] = append(conf["plugins"].([]any), map[string]any{"type": netguard.HoldPlugin, "policyNamespaces": policyNamespaces})
	}
	return json.MarshalIndent(conf, "", "  ")
}
