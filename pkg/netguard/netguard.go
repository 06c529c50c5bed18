// Package netguard keeps the cluster's addresses from leaving a node
// unrouted: an nftables table that refuses packets to the service network
// that kube-proxy did not translate, and an unreachable route for the pod
// network under the nodes' subnet routes. killall removes both (Remove).
package netguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kasa-io/kasa/pkg/component"
)

// Table is the nftables table (family ip) of the cluster network's
// guard; killall deletes it.
const Table = "kasa"

// RouteProtocol marks the guard's route (rtnetlink's protocol field),
// so that killall finds it.
const RouteProtocol = netlink.RouteProtocol(107)

// guardCheckEvery is how often the guard checks that its table and route
// are still there (a firewall reload may flush them) and puts them back.
const guardCheckEvery = 30 * time.Second

// Guard keeps the cluster's addresses from leaving the node unrouted. A
// packet to the service network that kube-proxy did not translate (a port
// the Service does not serve, an address no Service has) would otherwise
// follow the default route to the LAN's router; the guard refuses it on
// the node: a TCP reset, else an ICMP port unreachable, as kube-proxy's
// nftables mode does. Its chains hook forwarding and local output after
// the NAT that translates served addresses and before the filter table's
// chains (kube-router's among them, which accept the pods' traffic). A
// packet to an address of the pod network that no node's subnet route
// covers meets an unreachable route for the whole pod network.
type Guard struct {
	ServiceCIDR netip.Prefix
	// ClusterCIDR gets the unreachable route; invalid when the pod network
	// is not flannel's (--flannel-backend=none), whose routes are the
	// user's business.
	ClusterCIDR netip.Prefix
	// Hold adds the set HeldSet: traffic from and to its addresses is
	// dropped (see Hold).
	Hold bool
	Log  *slog.Logger
}

var _ component.Component = (*Guard)(nil)

// Name implements component.Component.
func (g *Guard) Name() string { return "network-guard" }

// Run implements component.Component.
func (g *Guard) Run(ctx context.Context, ready func()) error {
	if err := g.Apply(); err != nil {
		return err
	}
	ready()
	t := time.NewTicker(guardCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := g.apply(false); err != nil {
				g.Log.Warn("cannot put the cluster network's guard back", "err", err)
			}
		}
	}
}

// Apply writes the guard's table afresh, and its route, in the network
// namespace of the calling thread.
func (g *Guard) Apply() error { return g.apply(true) }

// apply writes the guard's table, afresh when fresh or when it is gone,
// and its route.
func (g *Guard) apply(fresh bool) error {
	if !g.ServiceCIDR.IsValid() || !g.ServiceCIDR.Addr().Is4() {
		return fmt.Errorf("the cluster's service network %v is not an IPv4 network", g.ServiceCIDR)
	}
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	table := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: Table}
	if !fresh {
		if _, err := conn.ListTableOfFamily(Table, nftables.TableFamilyIPv4); err != nil {
			g.Log.Warn("the cluster network's guard table was gone; writing it again")
			fresh = true
		}
	}
	if fresh {
		// Adding before deleting makes the delete succeed when there is
		// none; the three run as one transaction.
		conn.AddTable(table)
		conn.DelTable(table)
		conn.AddTable(table)
		var held *nftables.Set
		if g.Hold {
			held = &nftables.Set{Table: table, Name: HeldSet, KeyType: nftables.TypeIPAddr, HasTimeout: true}
			if err := conn.AddSet(held, nil); err != nil {
				return err
			}
		}
		for _, c := range []struct {
			name string
			hook *nftables.ChainHook
		}{{"forward", nftables.ChainHookForward}, {"output", nftables.ChainHookOutput}} {
			chain := conn.AddChain(&nftables.Chain{
				Name: c.name, Table: table, Type: nftables.ChainTypeFilter,
				Hooknum: c.hook, Priority: nftables.ChainPriorityRef(*nftables.ChainPriorityFilter - 10),
			})
			if held != nil {
				// Locally sent packets come from the node's addresses:
				// only those to a held pod matter.
				offsets := []uint32{dstOffset}
				if c.name == "forward" {
					offsets = append(offsets, srcOffset)
				}
				for _, off := range offsets {
					conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{
						&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
						&expr.Lookup{SourceRegister: 1, SetName: held.Name, SetID: held.ID},
						&expr.Counter{},
						&expr.Verdict{Kind: expr.VerdictDrop},
					}})
				}
			}
			for _, r := range rejectTo(g.ServiceCIDR) {
				conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: r})
			}
		}
		if err := conn.Flush(); err != nil {
			return fmt.Errorf("nftables table %s: %w (see kasa check-config)", Table, err)
		}
	}
	if !g.ClusterCIDR.IsValid() {
		return nil
	}
	route := Route(g.ClusterCIDR)
	if err := netlink.RouteReplace(route); err != nil {
		return fmt.Errorf("unreachable route for %s: %w", g.ClusterCIDR, err)
	}
	return nil
}

// Route is the guard's route for the pod network p.
func Route(p netip.Prefix) *netlink.Route {
	return &netlink.Route{
		Dst:      &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)},
		Type:     unix.RTN_UNREACHABLE,
		Protocol: RouteProtocol,
		Table:    unix.RT_TABLE_MAIN,
	}
}

// Offsets of the source and destination addresses in the IPv4 header.
const (
	srcOffset = 12
	dstOffset = 16
)

// rejectTo are the rules that refuse every packet to an address of p:
// TCP with a reset, the rest with ICMP port unreachable.
func rejectTo(p netip.Prefix) [][]expr.Any {
	addr := p.Masked().Addr().As4()
	mask := net.CIDRMask(p.Bits(), 32)
	match := []expr.Any{
		// ip daddr & mask == addr
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: dstOffset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr[:]},
	}
	tcp := append(append([]expr.Any{}, match...),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Counter{},
		&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
	)
	other := append(append([]expr.Any{}, match...),
		&expr.Counter{},
		&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3}, // port unreachable
	)
	return [][]expr.Any{tcp, other}
}

// Remove deletes the guard's table and routes, wherever a node left
// them; what is not there is no error.
func Remove() error {
	var errs []error
	if conn, err := nftables.New(); err == nil {
		if _, err := conn.ListTableOfFamily(Table, nftables.TableFamilyIPv4); err == nil {
			conn.DelTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: Table})
			if err := conn.Flush(); err != nil {
				errs = append(errs, fmt.Errorf("nftables table %s: %w", Table, err))
			}
		}
	} else {
		errs = append(errs, err)
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		errs = append(errs, err)
	}
	for _, r := range routes {
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("route %s: %w", r.Dst, err))
		}
	}
	return errors.Join(errs...)
}

// Available lists this host's nftables tables of family ip, to show that
// the kernel has nf_tables (checkconfig.Host.NFTables); it needs root.
func Available() error {
	conn, err := nftables.New()
	if err != nil {
		return err
	}
	_, err = conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	return err
}
