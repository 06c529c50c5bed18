package join

import (
	"net"
	"strings"

	"github.com/kasa-io/kasa/pkg/pki"
)

// NodeCerts are the certificates of a node named name with addresses ips:
// the kubelet's client and serving certificates and the client
// certificates of kube-proxy, flannel and the local-path volumes. CertFile
// and KeyFile are base names (client-kubelet.crt, ...); the key of each is
// its CertFile without the extension.
func NodeCerts(name string, ips []net.IP) []pki.Leaf {
	ips = append([]net.IP{net.ParseIP("127.0.0.1")}, ips...)
	leaves := []pki.Leaf{
		{CommonName: "system:node:" + name, Organization: []string{"system:nodes"}, Client: true, CertFile: "client-kubelet.crt"},
		{CommonName: name, Server: true, DNSNames: []string{name, "localhost"}, IPs: uniqueIPs(ips), CertFile: "serving-kubelet.crt"},
		{CommonName: "system:kube-proxy", Client: true, CertFile: "client-kube-proxy.crt"},
		{CommonName: "system:kasa-flannel", Client: true, CertFile: "client-flannel.crt"},
		{CommonName: "system:kasa-local-path", Client: true, CertFile: "client-local-path.crt"},
	}
	for i := range leaves {
		leaves[i].KeyFile = strings.TrimSuffix(leaves[i].CertFile, ".crt") + ".key"
	}
	return leaves
}

// CertName is the name a leaf of NodeCerts goes by in the join protocol.
func CertName(l pki.Leaf) string { return strings.TrimSuffix(l.CertFile, ".crt") }

func uniqueIPs(ips []net.IP) []net.IP {
	var out []net.IP
	seen := map[string]bool{}
	for _, ip := range ips {
		if ip != nil && !seen[ip.String()] {
			seen[ip.String()] = true
			out = append(out, ip)
		}
	}
	return out
}
