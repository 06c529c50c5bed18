package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/join"
	"github.com/kasa-io/kasa/pkg/pki"
)

func TestNodePassword(t *testing.T) {
	file := filepath.Join(t.TempDir(), "node-password")
	p1, err := nodePassword(file)
	if err != nil || len(p1) < 32 {
		t.Fatalf("password %q %v", p1, err)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", fi.Mode(), err)
	}
	if p2, _ := nodePassword(file); p2 != p1 {
		t.Error("the password changed on a second read")
	}
}

// signNodeCerts writes the node certificates of name with addresses ips
// into np, signed by a new CA, as a join does.
func signNodeCerts(t *testing.T, np Paths, name string, now time.Time, ips ...net.IP) *pki.CA {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), "test", pki.ECDSAP256, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(np.TLS(""), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(np.TLS("ca.crt"), ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, l := range join.NodeCerts(name, ips) {
		l.CertFile, l.KeyFile = np.TLS(l.CertFile), np.TLS(l.KeyFile)
		if _, err := ca.Ensure(l, now); err != nil {
			t.Fatal(err)
		}
	}
	return ca
}

func TestCheckNodeCerts(t *testing.T) {
	np := NewPaths(t.TempDir())
	now := time.Now()
	signNodeCerts(t, np, "n1", now)
	exp, err := checkNodeCerts(np, "n1")
	if err != nil || exp.Sub(now) < 300*24*time.Hour {
		t.Fatalf("fresh certificates: %v, expire %v", err, exp)
	}
	if _, err := checkNodeCerts(np, "n2"); err == nil || !strings.Contains(err.Error(), `not "system:node:n2"`) {
		t.Errorf("another node's name: %v", err)
	}
	// Certificates of another cluster's CA do not pass.
	other := NewPaths(t.TempDir())
	ca2 := signNodeCerts(t, other, "n1", now)
	if err := os.WriteFile(np.TLS("ca.crt"), ca2.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := checkNodeCerts(np, "n1"); err == nil || !strings.Contains(err.Error(), "not signed by the cluster CA") {
		t.Errorf("another CA: %v", err)
	}
	if _, err := checkNodeCerts(NewPaths(t.TempDir()), "n1"); err == nil {
		t.Error("no certificates passed")
	}
}

func TestSansDiffer(t *testing.T) {
	ca := signNodeCerts(t, NewPaths(t.TempDir()), "n1", time.Now())
	key, err := pki.EnsureKey(filepath.Join(t.TempDir(), "k"))
	if err != nil {
		t.Fatal(err)
	}
	serving := func(name string, ips ...net.IP) pki.Leaf { return join.NodeCerts(name, ips)[1] }
	crt, err := ca.Sign(key.Public(), serving("n1", ips("192.0.2.5", "2001:db8::5")...), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(crt)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want pki.Leaf
		diff string // "" or a part of the reason
	}{
		{"the same addresses", serving("n1", ips("192.0.2.5", "2001:db8::5")...), ""},
		{"another order, repeated", serving("n1", ips("2001:db8::5", "192.0.2.5", "192.0.2.5", "127.0.0.1")...), ""},
		{"an IPv4 address as 16 bytes", serving("n1", net.ParseIP("192.0.2.5").To16(), net.ParseIP("2001:db8::5")), ""},
		{"a new address", serving("n1", ips("192.0.2.9", "2001:db8::5")...), "names the addresses 127.0.0.1, 192.0.2.5, 2001:db8::5, the node has 127.0.0.1, 192.0.2.9, 2001:db8::5"},
		{"an address more", serving("n1", ips("192.0.2.5", "2001:db8::5", "198.51.100.1")...), "198.51.100.1"},
		{"an address less", serving("n1", ips("192.0.2.5")...), "the node has 127.0.0.1, 192.0.2.5"},
		{"no address", serving("n1"), "the node has 127.0.0.1"},
		{"another name", serving("n2", ips("192.0.2.5", "2001:db8::5")...), "names the hosts localhost, n1, the node is localhost, n2"},
	}
	for _, tt := range tests {
		got := sansDiffer(cert, tt.want)
		if (got == "") != (tt.diff == "") || !strings.Contains(got, tt.diff) {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.diff)
		}
	}
}

func TestServingMoved(t *testing.T) {
	np := NewPaths(t.TempDir())
	signNodeCerts(t, np, "n1", time.Now(), ips("192.0.2.5")...)
	if moved, err := servingMoved(np, "n1", ips("192.0.2.5")); moved != "" || err != nil {
		t.Errorf("same address: %q %v", moved, err)
	}
	if moved, err := servingMoved(np, "n1", ips("192.0.2.9")); !strings.Contains(moved, "192.0.2.9") || err != nil {
		t.Errorf("new address: %q %v", moved, err)
	}
	if _, err := servingMoved(NewPaths(t.TempDir()), "n1", nil); err == nil {
		t.Error("no certificate passed")
	}
}

func ips(s ...string) []net.IP {
	var out []net.IP
	for _, a := range s {
		out = append(out, net.ParseIP(a))
	}
	return out
}

// joinServer serves a real join endpoint of ca over a fake cluster, with
// the Node n1 and its password recorded unless deleted.
func joinServer(t *testing.T, ca *pki.CA, np Paths, log *slog.Logger, deleted bool) *httptest.Server {
	t.Helper()
	dir := t.TempDir()
	serving := pki.Leaf{CommonName: "server", Server: true, IPs: []net.IP{net.ParseIP("127.0.0.1")},
		CertFile: filepath.Join(dir, "s.crt"), KeyFile: filepath.Join(dir, "s.key")}
	if _, err := ca.Ensure(serving, time.Now()); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(serving.CertFile, serving.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	store := &join.Store{Client: fake.NewClientset()}
	ctx := context.Background()
	if _, err := store.EnsureTokens(ctx, "server-secret-0123456789", "agent-secret-0123456789"); err != nil {
		t.Fatal(err)
	}
	password, err := nodePassword(np.Join("node-password"))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.ClaimNodeName(ctx, "n1", password); err != nil {
		t.Fatal(err)
	}
	if !deleted {
		if _, err := store.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	h := &join.Handler{CA: ca, Store: store, Log: log, Cluster: join.Cluster{ClusterCIDR: "10.42.0.0/16"}}
	srv := httptest.NewUnstartedServer(h.Wrap(http.NotFoundHandler()))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	if err := saveState(np.Join("etc", "join.json"), &State{NodeName: "n1"}); err != nil {
		t.Fatal(err)
	}
	return srv
}

// TestBootstrapRenews: a joined agent whose certificates are due for
// renewal renews them at start with its own client certificate, with no
// token, through a real join endpoint.
func TestBootstrapRenews(t *testing.T) {
	np := NewPaths(t.TempDir())
	// Certificates signed 270 days ago: 95 days left, inside the renewal window.
	ca := signNodeCerts(t, np, "n1", time.Now().Add(-270*24*time.Hour), ips("192.0.2.5")...)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	srv := joinServer(t, ca, np, log, false)

	cfg := &config.AgentNode{DataDir: filepath.Dir(np.Root), Server: srv.URL, NodeName: "n1",
		NodeIPs: []netip.Addr{netip.MustParseAddr("192.0.2.5")}}
	state, err := bootstrap(context.Background(), cfg, np, log)
	if err != nil {
		t.Fatalf("bootstrap: %v\n%s", err, logs.String())
	}
	if state.Cluster.ClusterCIDR != "10.42.0.0/16" || !strings.Contains(logs.String(), "renewed the node's certificates") {
		t.Errorf("state %+v, log:\n%s", state, logs.String())
	}
	exp, err := checkNodeCerts(np, "n1")
	if err != nil || time.Until(exp) < 300*24*time.Hour {
		t.Errorf("after renewal: %v, expire %v", err, exp)
	}
}

// TestBootstrapDeletedNode: a node deleted from the cluster gets no new
// certificates, and its agent stops with the reason and the remedy.
func TestBootstrapDeletedNode(t *testing.T) {
	np := NewPaths(t.TempDir())
	ca := signNodeCerts(t, np, "n1", time.Now().Add(-270*24*time.Hour), ips("192.0.2.5")...)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	srv := joinServer(t, ca, np, log, true)
	before, _ := os.ReadFile(np.TLS("client-kubelet.crt"))

	cfg := &config.AgentNode{DataDir: filepath.Dir(np.Root), Server: srv.URL, NodeName: "n1",
		NodeIPs: []netip.Addr{netip.MustParseAddr("192.0.2.5")}}
	_, err := bootstrap(context.Background(), cfg, np, log)
	if !errors.Is(err, join.ErrNodeDeleted) || !strings.Contains(err.Error(), "node n1 was deleted from the cluster; join it again with a token (--token)") {
		t.Fatalf("bootstrap of a deleted node: %v\n%s", err, logs.String())
	}
	if after, _ := os.ReadFile(np.TLS("client-kubelet.crt")); !bytes.Equal(before, after) {
		t.Error("the deleted node's certificate changed")
	}
	// With a token it joins again.
	logs.Reset()
	cfg.Token = config.Secret("K10" + ca.Hash() + "::node:agent-secret-0123456789")
	if _, err := bootstrap(context.Background(), cfg, np, log); err != nil || !strings.Contains(logs.String(), "joined the cluster") {
		t.Errorf("joining again with a token: %v\n%s", err, logs.String())
	}
	if after, _ := os.ReadFile(np.TLS("client-kubelet.crt")); bytes.Equal(before, after) {
		t.Error("the join with a token kept the old certificate")
	}
}

// TestBootstrapAddressChanged: an agent whose certificates are fresh but
// whose address changed gets a serving certificate for the new address at
// start; one whose address is the same asks for nothing.
func TestBootstrapAddressChanged(t *testing.T) {
	np := NewPaths(t.TempDir())
	ca := signNodeCerts(t, np, "n1", time.Now(), ips("192.0.2.5")...)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	srv := joinServer(t, ca, np, log, false)
	cfg := &config.AgentNode{DataDir: filepath.Dir(np.Root), Server: srv.URL, NodeName: "n1",
		NodeIPs: []netip.Addr{netip.MustParseAddr("192.0.2.5")}}
	if _, err := bootstrap(context.Background(), cfg, np, log); err != nil || !strings.Contains(logs.String(), "joined before") || strings.Contains(logs.String(), "renew") {
		t.Fatalf("the same address: %v\n%s", err, logs.String())
	}

	logs.Reset()
	cfg.NodeIPs = []netip.Addr{netip.MustParseAddr("192.0.2.9")}
	if _, err := bootstrap(context.Background(), cfg, np, log); err != nil {
		t.Fatalf("a new address: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "addresses changed") || !strings.Contains(logs.String(), "renewed the node's certificates") {
		t.Errorf("log:\n%s", logs.String())
	}
	if moved, err := servingMoved(np, "n1", ips("192.0.2.9")); moved != "" || err != nil {
		t.Errorf("after the renewal: %q %v", moved, err)
	}
}
