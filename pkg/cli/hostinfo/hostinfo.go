// Package hostinfo reads the facts about this machine that settings default
// to: its host name and the address of its default-route interface.
package hostinfo

import (
	"bufio"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/kasa-io/kasa/pkg/config"
)

// Read returns the facts config.ServerOptions.Complete needs.
func Read() config.Host {
	name, _ := os.Hostname()
	return config.Host{Hostname: name, DefaultIP: DefaultRouteIP("/proc/net/route"), ReadFile: os.ReadFile}
}

// DefaultRouteIP returns the first IPv4 address of the interface that holds
// the IPv4 default route, read from a file in /proc/net/route's format; an
// invalid address when there is no default route.
func DefaultRouteIP(routeFile string) netip.Addr {
	iface := defaultRouteInterface(routeFile)
	if iface == "" {
		return netip.Addr{}
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return netip.Addr{}
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() {
				return ip.Unmap()
			}
		}
	}
	return netip.Addr{}
}

func defaultRouteInterface(routeFile string) string {
	f, err := os.Open(routeFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Scan() // header
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 8 && fields[1] == "00000000" && fields[7] == "00000000" {
			return fields[0]
		}
	}
	return ""
}
