package joinserver

import (
	"net"

	"github.com/kasa-io/kasa/pkg/join"
	"github.com/kasa-io/kasa/pkg/pki"
)

// legacyCerts are the certificates that earlier kasa agents also ask for,
// and fail to join or renew without. They were shared identities
// (system:kasa-flannel, system:kasa-local-path) that let any node patch
// any Node and delete any volume; a join or renewal that asks for them now
// gets certificates of the node's own identity under those names
// (requestedCerts), with which such an agent's flannel and volumes keep
// working as the node.
var legacyCerts = []string{"client-flannel", "client-local-path"}

// requestedCerts are the certificates a join or renewal gets for the
// public keys it sent: join.NodeCerts, and each of legacyCerts it asks
// for, as the node.
func requestedCerts(name string, ips []net.IP, keys map[string]string) []pki.Leaf {
	leaves := join.NodeCerts(name, ips)
	for _, legacy := range legacyCerts {
		if _, ok := keys[legacy]; ok {
			leaves = append(leaves, join.NodeClient(name, legacy))
		}
	}
	return leaves
}
