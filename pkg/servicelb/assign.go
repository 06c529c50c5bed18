package servicelb

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// EnableLBLabel limits load balancing to some nodes: once any node carries
// it with the value "true", only such nodes give their addresses.
const EnableLBLabel = "svccontroller.kasa.io/enablelb"

// NodeAddresses returns the addresses that a LoadBalancer service of the
// given IP families gets: those of the Ready nodes that may serve load
// balancers. For each node and family it takes the ExternalIP addresses, or
// the InternalIP ones when there are none. No families means IPv4. The
// result is deduplicated and sorted.
func NodeAddresses(nodes []*corev1.Node, families []corev1.IPFamily) []string {
	if len(families) == 0 {
		families = []corev1.IPFamily{corev1.IPv4Protocol}
	}
	onlyEnabled := false
	for _, n := range nodes {
		if n.Labels[EnableLBLabel] == "true" {
			onlyEnabled = true
			break
		}
	}
	set := map[netip.Addr]bool{}
	for _, n := range nodes {
		if onlyEnabled && n.Labels[EnableLBLabel] != "true" {
			continue
		}
		if _, ok := n.Labels[corev1.LabelNodeExcludeBalancers]; ok || !nodeReady(n) {
			continue
		}
		for _, f := range families {
			ips := addressesOf(n, corev1.NodeExternalIP, f)
			if len(ips) == 0 {
				ips = addressesOf(n, corev1.NodeInternalIP, f)
			}
			for _, ip := range ips {
				set[ip] = true
			}
		}
	}
	sorted := make([]netip.Addr, 0, len(set))
	for ip := range set {
		sorted = append(sorted, ip)
	}
	slices.SortFunc(sorted, netip.Addr.Compare)
	out := make([]string, len(sorted))
	for i, ip := range sorted {
		out[i] = ip.String()
	}
	return out
}

// addressesOf returns a node's addresses of one type and family.
func addressesOf(n *corev1.Node, typ corev1.NodeAddressType, family corev1.IPFamily) []netip.Addr {
	var out []netip.Addr
	for _, a := range n.Status.Addresses {
		if a.Type != typ {
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err != nil {
			continue
		}
		ip = ip.Unmap().WithZone("")
		if (family == corev1.IPv4Protocol && ip.Is4()) || (family == corev1.IPv6Protocol && ip.Is6()) {
			out = append(out, ip)
		}
	}
	return out
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Claim is one service's request for its ports on its addresses.
type Claim struct {
	Service   *corev1.Service
	Addresses []string
}

// Conflict says why a service waits: another service holds one of its
// ports on one of its addresses.
type Conflict struct {
	Address  string
	Port     int32
	Protocol corev1.Protocol
	// Holder is the namespace/name of the service that holds the port.
	Holder string
}

func (c Conflict) String() string {
	return fmt.Sprintf("port %d/%s on %s is held by service %s", c.Port, c.Protocol, c.Address, c.Holder)
}

// ResolveConflicts gives each port and protocol on an address to the oldest
// service that wants it (by creation time, then namespace/name). A service
// that cannot have all its ports on all its addresses gets none of them and
// holds nothing. The result maps each such service, by namespace/name, to
// the first port it lacks.
func ResolveConflicts(claims []Claim) map[string]Conflict {
	sorted := slices.Clone(claims)
	slices.SortFunc(sorted, func(a, b Claim) int {
		if c := a.Service.CreationTimestamp.Compare(b.Service.CreationTimestamp.Time); c != 0 {
			return c
		}
		return cmp.Compare(keyOf(a.Service), keyOf(b.Service))
	})
	type slot struct {
		addr  string
		port  int32
		proto corev1.Protocol
	}
	holders := map[slot]string{}
	lost := map[string]Conflict{}
	for _, c := range sorted {
		var want []slot
		var conflict *Conflict
	scan:
		for _, a := range c.Addresses {
			for _, p := range c.Service.Spec.Ports {
				s := slot{a, p.Port, protocolOf(p)}
				if h, ok := holders[s]; ok {
					conflict = &Conflict{Address: a, Port: p.Port, Protocol: s.proto, Holder: h}
					break scan
				}
				want = append(want, s)
			}
		}
		if conflict != nil {
			lost[keyOf(c.Service)] = *conflict
			continue
		}
		for _, s := range want {
			holders[s] = keyOf(c.Service)
		}
	}
	return lost
}

func protocolOf(p corev1.ServicePort) corev1.Protocol {
	if p.Protocol == "" {
		return corev1.ProtocolTCP
	}
	return p.Protocol
}

// pick narrows the addresses to the service's spec.loadBalancerIP when it is
// one of them; ignored tells that it was set to another address.
func pick(svc *corev1.Service, addrs []string) (out []string, ignored bool) {
	want := svc.Spec.LoadBalancerIP
	if want == "" {
		return addrs, false
	}
	ip, err := netip.ParseAddr(want)
	if err != nil {
		return addrs, true
	}
	want = ip.Unmap().String()
	if slices.Contains(addrs, want) {
		return []string{want}, false
	}
	return addrs, true
}

// handled tells whether the service is this controller's to serve.
func handled(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass == nil
}

func keyOf(svc *corev1.Service) string {
	return svc.Namespace + "/" + svc.Name
}
