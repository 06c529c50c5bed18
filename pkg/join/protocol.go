// Package join is how a machine becomes a node of a kasa cluster.
//
// The joining node fetches the cluster's server CA from a server's /cacerts
// and, before it sends any secret, checks the CA's sha256 against the hash
// its token names (K10<hash>::...). It then posts its node name, node password
// and public keys to /v1-kasa/join over TLS verified by that CA, with the
// token's user and secret as basic authentication. The server checks the
// secret (the server token, the agent token or a bootstrap token) and the
// node password, and answers with the node's certificates (client ones
// signed by the client CA, the kubelet's serving one by the kubelet CA, so
// that no node's certificate passes for the API server's), those two CAs,
// the list of servers and the cluster settings a node needs.
// Private keys never leave the node.
//
// Both paths are served on the API port, in front of kube-apiserver's own
// handlers.
//
// This package is what both sides share: the paths, the wire types, the
// certificates a node gets (NodeCerts) and where the list of servers comes
// from (Servers). The joining node's side is joinclient; the server's side
// (the handler, the secrets kept in the cluster, the rate limit) is
// joinserver, which an agent never imports.
package join

import "errors"

// Paths of the join endpoint.
const (
	CACertsPath = "/cacerts"
	JoinPath    = "/v1-kasa/join"
)

// Roles a machine can join as.
const (
	RoleAgent  = "agent"
	RoleServer = "server"
)

// Request is the body of a join.
type Request struct {
	NodeName string `json:"nodeName"`
	Role     string `json:"role"`
	// Password is the node's own secret: the cluster keeps its hash per
	// node name, so that only this machine can take the name again.
	Password string `json:"password"`
	// Addresses are the node's IPs, for its serving certificate.
	Addresses []string `json:"addresses"`
	// Keys maps a certificate's name (client-kubelet, serving-kubelet, ...;
	// see NodeCerts) to its public key in PEM (PKIX).
	Keys map[string]string `json:"keys"`
}

// Response is the answer to a successful join.
type Response struct {
	// Certificates maps each name of Request.Keys to its certificate (PEM).
	Certificates map[string]string `json:"certificates"`
	// Servers are the API servers' addresses (host:port).
	Servers []string `json:"servers"`
	Cluster Cluster  `json:"cluster"`
	// ClientCA (PEM) signed the client certificates; the kubelet verifies
	// the API server's client certificate with it.
	ClientCA string `json:"clientCA,omitempty"`
	// KubeletCA (PEM) signed the kubelet's serving certificate.
	KubeletCA string `json:"kubeletCA,omitempty"`
}

// Cluster is what a node needs to know of the cluster's settings.
type Cluster struct {
	ClusterCIDR    string `json:"clusterCIDR"`
	ServiceCIDR    string `json:"serviceCIDR"`
	ClusterDNS     string `json:"clusterDNS"`
	ClusterDomain  string `json:"clusterDomain"`
	FlannelBackend string `json:"flannelBackend"`
	LocalStorage   bool   `json:"localStorage"`
	// NodePortRange is the NodePort services' ports (low-high); a server
	// of an earlier kasa sends none, meaning the default.
	NodePortRange string `json:"nodePortRange,omitempty"`
	// DisableNetworkPolicy: the nodes do not enforce NetworkPolicies.
	DisableNetworkPolicy bool `json:"disableNetworkPolicy,omitempty"`
}

// Refusal is the body of a refused join: a message for the operator.
type Refusal struct {
	Message string `json:"message"`
}

// MaxBody bounds the body of a join request, and the CA certificate that
// /cacerts answers with.
const MaxBody = 64 << 10

// ErrNodeDeleted is the refusal of a renewal whose node was deleted from
// the cluster (its Node is gone): only a join with a token brings it back.
// The server answers it with 410 Gone.
var ErrNodeDeleted = errors.New("the node was deleted from the cluster")
