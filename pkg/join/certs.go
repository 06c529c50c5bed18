package join

import (
	"net"
	"strings"

	"github.com/kasa-io/kasa/pkg/pki"
)

// NodeCerts are the certificates of a node named name with addresses ips:
// the kubelet's client and serving certificates (the serving one names the
// node and its addresses only, never localhost) and kube-proxy's client
// certificate. flannel and the local-path volumes act as the node, with the
// kubelet's client certificate: NodeRestriction keeps a node to its own
// Node, and manifests/rbac.yaml's admission policy to the volumes pinned to
// it. CertFile and KeyFile are base names (client-kubelet.crt, ...); the key
// of each is its CertFile without the extension.
func NodeCerts(name string, ips []net.IP) []pki.Leaf {
	leaves := []pki.Leaf{
		NodeClient(name, "client-kubelet"),
		{CommonName: name, Server: true, DNSNames: []string{name}, IPs: uniqueIPs(ips), CertFile: "serving-kubelet.crt"},
		{CommonName: "system:kube-proxy", Client: true, CertFile: "client-kube-proxy.crt"},
	}
	for i := range leaves {
		leaves[i].KeyFile = strings.TrimSuffix(leaves[i].CertFile, ".crt") + ".key"
	}
	return leaves
}

// NodeClient is a client certificate of the node's own identity, which the
// Node authorizer and NodeRestriction know, named file (without .crt).
func NodeClient(name, file string) pki.Leaf {
	return pki.Leaf{CommonName: "system:node:" + name, Organization: []string{"system:nodes"}, Client: true, CertFile: file + ".crt", KeyFile: file + ".key"}
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
