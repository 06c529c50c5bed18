package agent

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// TestPodsRuled: the pods kube-router's forward chain sends to their own
// chains, from iptables-save output; nothing else counts.
func TestPodsRuled(t *testing.T) {
	save := `*filter
:KUBE-ROUTER-FORWARD - [0:0]
-A KUBE-ROUTER-FORWARD -d 10.42.1.7/32 -m comment --comment "rule to jump traffic destined to POD name:a namespace: x to chain KUBE-POD-FW-ABC" -j KUBE-POD-FW-ABC
-A KUBE-ROUTER-FORWARD -s 10.42.1.8/32 -m physdev --physdev-is-bridged -m comment --comment "x" -j KUBE-POD-FW-DEF
-A KUBE-ROUTER-FORWARD -d 10.42.1.9/32 -j ACCEPT
-A KUBE-ROUTER-OUTPUT -d 10.42.1.10/32 -j KUBE-POD-FW-GHI
-A KUBE-ROUTER-FORWARD -d 10.42.0.0/16 -j KUBE-POD-FW-JKL
COMMIT
`
	got := podsRuled(save)
	for _, a := range []string{"10.42.1.7", "10.42.1.8"} {
		if !got[netip.MustParseAddr(a)] {
			t.Errorf("%s not ruled", a)
		}
	}
	if len(got) != 2 {
		t.Errorf("ruled: %v", got)
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
