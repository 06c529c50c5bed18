package server

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/pki"
)

// Client identities of the control plane. Each gets a client certificate
// signed by the cluster CA; the names are the ones Kubernetes' default RBAC
// rules know.
const (
	adminUser      = "system:admin"
	mastersGroup   = "system:masters"
	controllerUser = "system:kube-controller-manager"
	schedulerUser  = "system:kube-scheduler"
	apiserverUser  = "system:kube-apiserver"
	authProxyUser  = "system:auth-proxy"
)

// certs is what ensureCerts made or found.
type certs struct {
	CA *pki.CA
}

// serverNames returns the DNS names and IPs of the API server's certificate.
func serverNames(cfg *config.Server) ([]string, []net.IP) {
	dns := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc." + cfg.ClusterDomain, cfg.NodeName}
	ips := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback(), cfg.ServiceCIDR.Addr().Next(), cfg.AdvertiseAddress}
	ips = append(ips, cfg.NodeIPs...)
	if !cfg.BindAddress.IsUnspecified() {
		ips = append(ips, cfg.BindAddress)
	}
	for _, san := range cfg.TLSSANs {
		if a, err := netip.ParseAddr(san); err == nil {
			ips = append(ips, a)
		} else {
			dns = append(dns, san)
		}
	}
	slices.Sort(dns)
	dns = slices.Compact(dns)
	var out []net.IP
	seen := map[netip.Addr]bool{}
	for _, a := range ips {
		if a.IsValid() && !seen[a] {
			seen[a] = true
			out = append(out, net.IP(a.AsSlice()))
		}
	}
	return dns, out
}

// ensureCerts creates the CAs and every control-plane certificate on first
// start, and on later starts renews those that expire within 120 days or
// whose names changed. CAs are never replaced.
func ensureCerts(cfg *config.Server, p Paths, now time.Time, log *slog.Logger) (*certs, error) {
	ca, err := pki.LoadOrCreateCA(p.TLS("ca.crt"), p.TLS("ca.key"), "kasa-ca", pki.RSA2048, now)
	if err != nil {
		return nil, err
	}
	proxyCA, err := pki.LoadOrCreateCA(p.TLS("request-header-ca.crt"), p.TLS("request-header-ca.key"), "kasa-request-header-ca", pki.ECDSAP256, now)
	if err != nil {
		return nil, err
	}
	// RSA for the two keys whose signatures the API server checks on most
	// requests: the CA of client certificates and the service-account key.
	if err := pki.GenerateKeyFile(p.TLS("service-account.key"), pki.RSA2048); err != nil {
		return nil, err
	}
	dns, ips := serverNames(cfg)
	leaves := []struct {
		ca   *pki.CA
		leaf pki.Leaf
	}{
		{ca, pki.Leaf{CommonName: "kube-apiserver", Server: true, DNSNames: dns, IPs: ips,
			CertFile: p.TLS("serving-kube-apiserver.crt"), KeyFile: p.TLS("serving-kube-apiserver.key")}},
		{ca, clientLeaf(p, "admin", adminUser, mastersGroup)},
		{ca, clientLeaf(p, "kube-apiserver", apiserverUser, mastersGroup)},
		{ca, clientLeaf(p, "controller", controllerUser)},
		{ca, clientLeaf(p, "scheduler", schedulerUser)},
		{proxyCA, clientLeaf(p, "auth-proxy", authProxyUser)},
	}
	for _, l := range leaves {
		wrote, err := l.ca.Ensure(l.leaf, now)
		if err != nil {
			return nil, fmt.Errorf("certificate %s: %w", l.leaf.CertFile, err)
		}
		if wrote {
			log.Info("wrote certificate", "file", l.leaf.CertFile, "cn", l.leaf.CommonName)
		}
	}
	return &certs{CA: ca}, nil
}

func clientLeaf(p Paths, file, user string, groups ...string) pki.Leaf {
	return pki.Leaf{CommonName: user, Organization: groups, Client: true,
		CertFile: p.TLS("client-" + file + ".crt"), KeyFile: p.TLS("client-" + file + ".key")}
}
