package hosts

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	createTimeout  = 2 * time.Minute
	cleanupTimeout = 2 * time.Minute
	// firstHost is the last octet of the first address StartHost hands out.
	firstHost = 10
)

// Networks that a test network must not overlap: kasa's default pod and
// service networks, and Docker's default bridge.
var reserved = []netip.Prefix{
	netip.MustParsePrefix("10.42.0.0/16"),
	netip.MustParsePrefix("10.43.0.0/16"),
	netip.MustParsePrefix("172.17.0.0/16"),
}

var validName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// Network is a Docker bridge network with a fixed subnet; the test machine
// has its gateway address, on the bridge Bridge.
type Network struct {
	// Name is the Docker network's name; it begins with Prefix and begins
	// the name of every container and volume of the network.
	Name    string
	Subnet  netip.Prefix
	Gateway netip.Addr
	// Bridge is the network's interface on this machine (br-<id>).
	Bridge string
	// Image is the image of the hosts (Image() unless changed).
	Image string
	// Logf, when set, receives progress (t.Logf fits).
	Logf func(format string, args ...any)

	mu    sync.Mutex
	hosts map[string]*Host
	// refused are addresses Docker refused ("Address already in use")
	// though no host of the network had them; they are not handed out
	// again.
	refused map[netip.Addr]bool
	closed  bool
}

// NewNetwork creates the Docker bridge network Prefix+name (name may
// already begin with Prefix) with the given IPv4 subnet, its first address
// as the gateway. The subnet must not overlap 10.42.0.0/16, 10.43.0.0/16 or
// 172.17.0.0/16. Close removes it.
func NewNetwork(name string, subnet string) (*Network, error) {
	if !strings.HasPrefix(name, Prefix) {
		name = Prefix + name
	}
	if !validName.MatchString(name) || len(name) > 40 {
		return nil, fmt.Errorf("network name %q: use up to 40 lowercase letters, digits and dashes", name)
	}
	p, err := netip.ParsePrefix(subnet)
	if err != nil {
		return nil, fmt.Errorf("subnet: %w", err)
	}
	p = p.Masked()
	if !p.Addr().Is4() || p.Bits() > 28 {
		return nil, fmt.Errorf("subnet %s: want an IPv4 network of at least 16 addresses", p)
	}
	for _, r := range reserved {
		if r.Overlaps(p) {
			return nil, fmt.Errorf("subnet %s overlaps %s (kasa's pod or service network, or Docker's default bridge)", p, r)
		}
	}
	img, err := Image()
	if err != nil {
		return nil, err
	}
	n := &Network{Name: name, Subnet: p, Gateway: p.Addr().Next(), Image: img, hosts: map[string]*Host{}, refused: map[netip.Addr]bool{}}
	ctx, cancel := context.WithTimeout(context.Background(), createTimeout)
	defer cancel()
	id, _, err := docker(ctx, nil, "network", "create",
		"--driver", "bridge",
		"--subnet", p.String(),
		"--gateway", n.Gateway.String(),
		"--label", Label+"=1",
		"--label", NetworkLabel+"="+name,
		name)
	if err != nil {
		return nil, fmt.Errorf("create network %s: %w (a run that was killed may have left it: hosts.Cleanup(%q))", name, err, name)
	}
	id = strings.TrimSpace(id)
	// Docker names the bridge br-<the first 12 digits of the id> unless
	// told otherwise.
	n.Bridge = "br-" + id[:min(12, len(id))]
	if out, _, err := docker(ctx, nil, "network", "inspect", "--format", `{{index .Options "com.docker.network.bridge.name"}}`, name); err == nil {
		if b := strings.TrimSpace(out); b != "" && b != "<no value>" {
			n.Bridge = b
		}
	}
	n.logf("network %s: %s on %s", name, p, n.Bridge)
	return n, nil
}

func (n *Network) logf(format string, args ...any) {
	if n.Logf != nil {
		n.Logf(format, args...)
	}
}

// Hosts lists the network's hosts that are not closed, by name.
func (n *Network) Hosts() []*Host {
	n.mu.Lock()
	defer n.mu.Unlock()
	var hs []*Host
	for _, h := range n.hosts {
		hs = append(hs, h)
	}
	slices.SortFunc(hs, func(a, b *Host) int { return strings.Compare(a.Name, b.Name) })
	return hs
}

// allocate reserves ip, or the next free address when ip is empty.
func (n *Network) allocate(name, ip string) (netip.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return netip.Addr{}, errors.New("network closed")
	}
	if _, ok := n.hosts[name]; ok {
		return netip.Addr{}, fmt.Errorf("host %s exists", name)
	}
	used := map[netip.Addr]bool{n.Gateway: true}
	for a := range n.refused {
		used[a] = true
	}
	for _, h := range n.hosts {
		used[h.addr] = true
	}
	if ip != "" {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return netip.Addr{}, err
		}
		if !n.Subnet.Contains(a) || a == n.Subnet.Addr() || used[a] {
			return netip.Addr{}, fmt.Errorf("address %s is outside %s or taken", a, n.Subnet)
		}
		return a, nil
	}
	a := n.Subnet.Addr()
	for range firstHost {
		a = a.Next()
	}
	for ; n.Subnet.Contains(a); a = a.Next() {
		// The last address is the broadcast address.
		if !used[a] && n.Subnet.Contains(a.Next()) {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no free address in %s", n.Subnet)
}

// Close removes every host of the network that is still there (container
// and volume), then the network, with which Docker removes the network's
// iptables rules. It may be called again.
func (n *Network) Close() error {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	var errs []error
	for _, h := range n.Hosts() {
		errs = append(errs, h.Close())
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if _, _, err := docker(ctx, nil, "network", "inspect", "--format", "{{.Id}}", n.Name); err == nil {
		if _, _, err := docker(ctx, nil, "network", "rm", n.Name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
