//go:build e2e

package e2e

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kasa-io/kasa/pkg/netguard"
)

// TestE2EGuardRules runs the cluster network's guard in a network
// namespace of its own whose default route leads to a gateway that never
// answers (a packet that takes it is lost, as one that reaches the LAN's router would
// be answered by it): a connection to the service network is refused on
// the spot, TCP and UDP; one to the pod network outside any node's subnet
// finds no route; a held address gets nothing; once removed, table, set
// and route are gone and the same connections leave.
func TestE2EGuardRules(t *testing.T) {
	// The namespace is this thread's only. The thread goes back to the
	// host's namespace at the end: a locked thread that exits is the
	// process's main thread now and then, which Go keeps, and /proc/self/net
	// would show the test's namespace to every later test.
	runtime.LockOSThread()
	host, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer host.Close()
		if err := unix.Setns(int(host.Fd()), unix.CLONE_NEWNET); err != nil {
			t.Errorf("back to the host's network namespace: %v", err)
			return // the thread stays locked, and ends with the test
		}
		runtime.UnlockOSThread()
	})
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	// A veth pair: the far end answers nothing, not even ARP for the
	// gateway, so what is sent is lost.
	dummy := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink"}, PeerName: "lan"}
	for _, step := range []error{netlink.LinkSetUp(lo), netlink.LinkAdd(dummy)} {
		if step != nil {
			t.Fatal(step)
		}
	}
	if peer, err := netlink.LinkByName("lan"); err != nil || netlink.LinkSetUp(peer) != nil {
		t.Fatalf("the far end: %v", err)
	}
	addr, _ := netlink.ParseAddr("192.168.77.1/24")
	if err := netlink.AddrAdd(dummy, addr); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(dummy); err != nil {
		t.Fatal(err)
	}
	if err := netlink.RouteAdd(&netlink.Route{Gw: net.ParseIP("192.168.77.2"), LinkIndex: dummy.Attrs().Index}); err != nil {
		t.Fatal(err)
	}
	// The gateways' link addresses are known, so that packets to them
	// are sent (and lost) rather than waiting for ARP.
	for _, gw := range []string{"192.168.77.2", "192.168.77.3"} {
		mac, _ := net.ParseMAC("02:00:00:00:00:01")
		if err := netlink.NeighAdd(&netlink.Neigh{LinkIndex: dummy.Attrs().Index, Family: netlink.FAMILY_V4,
			State: netlink.NUD_PERMANENT, IP: net.ParseIP(gw), HardwareAddr: mac}); err != nil {
			t.Fatal(err)
		}
	}
	g := &netguard.Guard{
		ServiceCIDR: netip.MustParsePrefix("10.43.0.0/16"),
		ClusterCIDR: netip.MustParsePrefix("10.42.0.0/16"),
		Hold:        true,
		Log:         slog.Default(),
	}
	// Apply, not Run: the netlink sockets must be made on this thread,
	// which is in the namespace.
	if err := g.Apply(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	dial := func(network, address string) error {
		d := net.Dialer{Timeout: 500 * time.Millisecond}
		c, err := d.DialContext(ctx, network, address)
		if err == nil && network == "udp" {
			_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
			if _, err = c.Write([]byte("x")); err == nil {
				_, err = c.Read(make([]byte, 10))
			}
		}
		if c != nil {
			c.Close()
		}
		return err
	}
	timeout := func(err error) bool {
		var ne net.Error
		return errors.As(err, &ne) && ne.Timeout()
	}
	for _, c := range []struct {
		network, address string
		want             syscall.Errno
	}{
		{"tcp", "10.43.0.10:443", syscall.ECONNREFUSED},
		// Sent from this host, not forwarded: the reject's drop fails the
		// send itself.
		{"udp", "10.43.0.10:53", syscall.EPERM},
		{"tcp", "10.42.9.9:80", syscall.EHOSTUNREACH},
	} {
		start := time.Now()
		if err := dial(c.network, c.address); !errors.Is(err, c.want) {
			t.Errorf("%s %s with the guard: %v, want %v", c.network, c.address, err, c.want)
		} else if d := time.Since(start); d > 400*time.Millisecond {
			t.Logf("%s %s refused after %s", c.network, c.address, d)
		}
	}
	// An address of the pod network that a node's route covers leaves.
	if err := netlink.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.ParseIP("10.42.1.0"), Mask: net.CIDRMask(24, 32)},
		Gw: net.ParseIP("192.168.77.3"), LinkIndex: dummy.Attrs().Index}); err != nil {
		t.Fatal(err)
	}
	if err := dial("tcp", "10.42.1.5:80"); !timeout(err) {
		t.Errorf("tcp to a node's subnet: %v, want a timeout (sent, lost)", err)
	}
	// A held address gets nothing, until let go.
	held := netip.MustParseAddr("10.42.1.6")
	if err := netguard.Hold([]netip.Addr{held}); err != nil {
		t.Fatal(err)
	}
	if got, err := netguard.Held(); err != nil || len(got) != 1 || got[0] != held {
		t.Errorf("held: %v %v", got, err)
	}
	if err := dial("tcp", "10.42.1.6:80"); !errors.Is(err, syscall.EPERM) && !timeout(err) {
		t.Errorf("tcp to a held address: %v, want dropped", err)
	}
	if err := netguard.Release([]netip.Addr{held}); err != nil {
		t.Fatal(err)
	}
	if got, err := netguard.Held(); err != nil || len(got) != 0 {
		t.Errorf("held after the release: %v %v", got, err)
	}

	// Removed: nothing of the guard is left, and the same connections
	// leave by the default route.
	if err := netguard.Remove(); err != nil {
		t.Fatal(err)
	}
	conn, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ListTableOfFamily(netguard.Table, nftables.TableFamilyIPv4); err == nil {
		t.Error("the guard's table is still there")
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: netguard.RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil || len(routes) != 0 {
		t.Errorf("the guard's routes: %v %v", routes, err)
	}
	for _, a := range []string{"10.43.0.10:443", "10.42.9.9:80"} {
		if err := dial("tcp", a); !timeout(err) {
			t.Errorf("tcp %s without the guard: %v, want a timeout (sent by the default route)", a, err)
		}
	}
}
