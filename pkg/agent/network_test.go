package agent

import (
	"encoding/json"
	"testing"
)

func TestConflist(t *testing.T) {
	b, err := Conflist("10.42.3.0/24", "/var/lib/kasa/agent/cni/networks", 1450, "")
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		CNIVersion string `json:"cniVersion"`
		Plugins    []struct {
			Type string `json:"type"`
			MTU  int    `json:"mtu"`
			IPAM struct {
				Ranges [][]struct {
					Subnet string `json:"subnet"`
				} `json:"ranges"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	if len(conf.Plugins) != 2 || conf.Plugins[0].Type != "bridge" || conf.Plugins[1].Type != "portmap" {
		t.Fatalf("plugins: %+v", conf.Plugins)
	}
	if conf.Plugins[0].MTU != 1450 || conf.Plugins[0].IPAM.Ranges[0][0].Subnet != "10.42.3.0/24" {
		t.Fatalf("bridge: %+v", conf.Plugins[0])
	}
}

// TestConflistHold: with the network policy controller's file, kasa-hold
// comes last, after the bridge has given the pod its address, and names
// the file.
func TestConflistHold(t *testing.T) {
	b, err := Conflist("10.42.3.0/24", "/var/lib/kasa/agent/cni/networks", 1450, "/run/kasa/netpol/namespaces")
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Plugins []struct {
			Type             string `json:"type"`
			PolicyNamespaces string `json:"policyNamespaces"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	if len(conf.Plugins) != 3 || conf.Plugins[0].Type != "bridge" || conf.Plugins[2].Type != "kasa-hold" ||
		conf.Plugins[2].PolicyNamespaces != "/run/kasa/netpol/namespaces" {
		t.Fatalf("plugins: %+v", conf.Plugins)
	}
}
