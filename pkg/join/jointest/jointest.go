// Package jointest serves a real join endpoint (joinserver) over a fake
// cluster, for the tests of the join's two sides and of the agent, which
// so never import the server's side themselves.
package jointest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kasa-io/kasa/pkg/join"
	"github.com/kasa-io/kasa/pkg/join/joinserver"
	"github.com/kasa-io/kasa/pkg/pki"
)

// CAs are a cluster's server, client and kubelet CAs, with their files in
// Dir.
type CAs struct {
	Server, Client, Kubelet *pki.CA
	Dir                     string
}

var caFiles = []string{"server", "client", "kubelet"}

// NewCAs makes the three CAs of a test cluster.
func NewCAs(t testing.TB) CAs {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	var cas [3]*pki.CA
	for i, name := range caFiles {
		ca, err := pki.LoadOrCreateCA(filepath.Join(dir, name+"-ca.crt"), filepath.Join(dir, name+"-ca.key"), name+"-ca", pki.ECDSAP256, now)
		if err != nil {
			t.Fatal(err)
		}
		cas[i] = ca
	}
	return CAs{Server: cas[0], Client: cas[1], Kubelet: cas[2], Dir: dir}
}

// Rotate starts a rotation of the three CAs (pki.RotateCA) and returns
// them as they then are.
func (c CAs) Rotate(t testing.TB) CAs {
	t.Helper()
	var cas [3]*pki.CA
	for i, name := range caFiles {
		certFile, keyFile := filepath.Join(c.Dir, name+"-ca.crt"), filepath.Join(c.Dir, name+"-ca.key")
		if _, err := pki.RotateCA(certFile, keyFile, time.Now()); err != nil {
			t.Fatal(err)
		}
		ca, err := pki.LoadCA(certFile, keyFile, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cas[i] = ca
	}
	return CAs{Server: cas[0], Client: cas[1], Kubelet: cas[2], Dir: c.Dir}
}

// NewStore is a store over a fake cluster that holds objects (Nodes and
// EndpointSlices).
func NewStore(objects ...any) *joinserver.Store {
	cs := fake.NewClientset()
	for _, o := range objects {
		switch o := o.(type) {
		case *corev1.Node:
			_, _ = cs.CoreV1().Nodes().Create(context.Background(), o, metav1.CreateOptions{})
		case *discoveryv1.EndpointSlice:
			_, _ = cs.DiscoveryV1().EndpointSlices(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
		}
	}
	return &joinserver.Store{Client: cs}
}

// NewHandler is a join handler of cas over store, logging to log.
func NewHandler(cas CAs, store *joinserver.Store, log *slog.Logger) *joinserver.Handler {
	return &joinserver.Handler{ServerCA: cas.Server, ClientCA: cas.Client, KubeletCA: cas.Kubelet, Store: store, Log: log}
}

// Serve serves h in front of next (a stand-in for the API server's own
// handlers; nil answers 404) over TLS, with a serving certificate of
// h.ServerCA for localhost and 127.0.0.1, asking for client certificates
// as kube-apiserver does and leaving their check to h.
func Serve(t testing.TB, h *joinserver.Handler, next http.Handler) *httptest.Server {
	t.Helper()
	if next == nil {
		next = http.NotFoundHandler()
	}
	dir := t.TempDir()
	leaf := pki.Leaf{CommonName: "server", Server: true, DNSNames: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")},
		CertFile: filepath.Join(dir, "s.crt"), KeyFile: filepath.Join(dir, "s.key")}
	if _, err := h.ServerCA.Ensure(leaf, time.Now()); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(leaf.CertFile, leaf.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h.Wrap(next))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// Request is an agent's join request for the node name, with a password,
// an address and a new key for each of join.NodeCerts; it returns the
// keys by certificate name.
func Request(t testing.TB, name string) (join.Request, map[string]*ecdsa.PrivateKey) {
	t.Helper()
	req := join.Request{NodeName: name, Role: join.RoleAgent, Password: "pw-" + name + "-0123456789abcdef", Addresses: []string{"192.0.2.7"}, Keys: map[string]string{}}
	keys := map[string]*ecdsa.PrivateKey{}
	for _, l := range join.NodeCerts(name, nil) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := pki.PublicKeyPEM(k.Public())
		req.Keys[join.CertName(l)] = string(pub)
		keys[join.CertName(l)] = k
	}
	return req, keys
}
