package agent

import "encoding/json"

// ConflistName is the CNI configuration file kasa writes.
const ConflistName = "10-kasa.conflist"

// Conflist is the CNI configuration for a node whose pods live in subnet:
// the upstream bridge plugin (cni0, the pods' gateway) with host-local
// addresses, and portmap for hostPort. flannel routes the subnet between
// nodes and masquerades traffic that leaves the cluster network.
func Conflist(subnet, ipamDir string, mtu int) ([]byte, error) {
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
	return json.MarshalIndent(conf, "", "  ")
}
