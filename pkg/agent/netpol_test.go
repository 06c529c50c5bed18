package agent

import (
	"errors"
	"maps"
	"net/netip"
	"strings"
	"testing"
)

// TestPodChains: the pods kube-router's forward chain sends to their own
// chains, from iptables-save output, with the chain; nothing else counts.
func TestPodChains(t *testing.T) {
	save := `*filter
:KUBE-ROUTER-FORWARD - [0:0]
-A KUBE-ROUTER-FORWARD -d 10.42.1.7/32 -m comment --comment "rule to jump traffic destined to POD name:a namespace: x to chain KUBE-POD-FW-ABC" -j KUBE-POD-FW-ABC
-A KUBE-ROUTER-FORWARD -s 10.42.1.8/32 -m physdev --physdev-is-bridged -m comment --comment "x" -j KUBE-POD-FW-DEF
-A KUBE-ROUTER-FORWARD -d 10.42.1.9/32 -j ACCEPT
-A KUBE-ROUTER-OUTPUT -d 10.42.1.10/32 -j KUBE-POD-FW-GHI
-A KUBE-ROUTER-FORWARD -d 10.42.0.0/16 -j KUBE-POD-FW-JKL
COMMIT
`
	got := podChains(save)
	want := map[netip.Addr]string{netip.MustParseAddr("10.42.1.7"): "KUBE-POD-FW-ABC", netip.MustParseAddr("10.42.1.8"): "KUBE-POD-FW-DEF"}
	if !maps.Equal(got, want) {
		t.Errorf("chains: %v, want %v", got, want)
	}
}

func TestCheckNetpolPrograms(t *testing.T) {
	if err := CheckNetpolPrograms(func(string) (string, error) { return "/usr/sbin/x", nil }); err != nil {
		t.Fatal(err)
	}
	err := CheckNetpolPrograms(func(p string) (string, error) {
		if p == "ipset" {
			return "", errors.New("not found")
		}
		return "/usr/sbin/" + p, nil
	})
	if err == nil || !strings.Contains(err.Error(), "[ipset]") || !strings.Contains(err.Error(), "--disable-network-policy") {
		t.Errorf("without ipset: %v", err)
	}
}
