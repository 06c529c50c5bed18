package agent

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/datadir"
	"github.com/kasa-io/kasa/pkg/join"
	"github.com/kasa-io/kasa/pkg/join/jointest"
	"github.com/kasa-io/kasa/pkg/pki"
	"github.com/kasa-io/kasa/pkg/token"
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

// clusterCAs are a test cluster's CAs; in a cluster made with one CA,
// all three are the same.
type clusterCAs struct{ Server, Client, Kubelet *pki.CA }

func newCAs(t *testing.T, now time.Time, one bool) clusterCAs {
	t.Helper()
	dir := t.TempDir()
	var cas [3]*pki.CA
	for i := range cas {
		if one && i > 0 {
			cas[i] = cas[0]
			continue
		}
		ca, err := pki.LoadOrCreateCA(filepath.Join(dir, strconv.Itoa(i)+".crt"), filepath.Join(dir, strconv.Itoa(i)+".key"), "test", pki.ECDSAP256, now)
		if err != nil {
			t.Fatal(err)
		}
		cas[i] = ca
	}
	return clusterCAs{Server: cas[0], Client: cas[1], Kubelet: cas[2]}
}

// signNodeCerts writes the node certificates of name with addresses ips
// into np, signed by new CAs, as a join does.
func signNodeCerts(t *testing.T, np datadir.Agent, name string, now time.Time, ips ...net.IP) clusterCAs {
	t.Helper()
	cas := newCAs(t, now, false)
	writeNodeCerts(t, np, cas, name, now, ips...)
	return cas
}

// writeNodeCerts writes the node certificates of name into np as a join
// with cas does; with one CA, as a kasa with one CA did (ca.crt alone).
func writeNodeCerts(t *testing.T, np datadir.Agent, cas clusterCAs, name string, now time.Time, ips ...net.IP) {
	t.Helper()
	if err := os.MkdirAll(np.TLS(""), 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string]*pki.CA{"ca.crt": cas.Server, "client-ca.crt": cas.Client, "kubelet-ca.crt": cas.Kubelet}
	if cas.Client == cas.Server {
		files = map[string]*pki.CA{"ca.crt": cas.Server}
	}
	for file, ca := range files {
		if err := os.WriteFile(np.TLS(file), ca.CertPEM, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range join.NodeCerts(name, ips) {
		l.CertFile, l.KeyFile = np.TLS(l.CertFile), np.TLS(l.KeyFile)
		ca := cas.Client
		if l.Server {
			ca = cas.Kubelet
		}
		if _, err := ca.Ensure(l, now); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCheckNodeCerts(t *testing.T) {
	np := datadir.New(t.TempDir()).Agent()
	now := time.Now()
	signNodeCerts(t, np, "n1", now)
	first, err := checkNodeCerts(np, "n1")
	if err != nil || first.NotAfter.Sub(now) < 300*24*time.Hour {
		t.Fatalf("fresh certificates: %v, %v", err, first.NotAfter)
	}
	if _, err := checkNodeCerts(np, "n2"); err == nil || !strings.Contains(err.Error(), `not "system:node:n2"`) {
		t.Errorf("another node's name: %v", err)
	}
	// Certificates of another cluster's CAs do not pass, nor do they
	// when the client and kubelet CAs are swapped.
	cas2 := signNodeCerts(t, datadir.New(t.TempDir()).Agent(), "n1", now)
	kubeletPEM, _ := os.ReadFile(np.TLS("kubelet-ca.crt"))
	clientPEM, _ := os.ReadFile(np.TLS("client-ca.crt"))
	for what, files := range map[string]map[string][]byte{
		"another client CA":  {"client-ca.crt": cas2.Client.CertPEM, "kubelet-ca.crt": kubeletPEM},
		"another kubelet CA": {"client-ca.crt": clientPEM, "kubelet-ca.crt": cas2.Kubelet.CertPEM},
		"the CAs swapped":    {"client-ca.crt": kubeletPEM, "kubelet-ca.crt": clientPEM},
	} {
		for file, pem := range files {
			if err := os.WriteFile(np.TLS(file), pem, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := checkNodeCerts(np, "n1"); err == nil || !strings.Contains(err.Error(), "not signed by the cluster CA") {
			t.Errorf("%s: %v", what, err)
		}
	}
	if _, err := checkNodeCerts(datadir.New(t.TempDir()).Agent(), "n1"); err == nil {
		t.Error("no certificates passed")
	}
}

func TestSansDiffer(t *testing.T) {
	ca := signNodeCerts(t, datadir.New(t.TempDir()).Agent(), "n1", time.Now()).Kubelet
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
		{"another order, repeated", serving("n1", ips("2001:db8::5", "192.0.2.5", "192.0.2.5")...), ""},
		{"an IPv4 address as 16 bytes", serving("n1", net.ParseIP("192.0.2.5").To16(), net.ParseIP("2001:db8::5")), ""},
		{"a new address", serving("n1", ips("192.0.2.9", "2001:db8::5")...), "names the addresses 192.0.2.5, 2001:db8::5, the node has 192.0.2.9, 2001:db8::5"},
		{"an address more", serving("n1", ips("192.0.2.5", "2001:db8::5", "198.51.100.1")...), "198.51.100.1"},
		{"an address less", serving("n1", ips("192.0.2.5")...), "2001:db8::5, the node has 192.0.2.5"},
		{"no address", serving("n1"), "2001:db8::5, the node has "},
		{"another name", serving("n2", ips("192.0.2.5", "2001:db8::5")...), "names the hosts n1, the node is n2"},
	}
	for _, tt := range tests {
		got := sansDiffer(cert, tt.want)
		if (got == "") != (tt.diff == "") || !strings.Contains(got, tt.diff) {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.diff)
		}
	}
}

func TestServingMoved(t *testing.T) {
	np := datadir.New(t.TempDir()).Agent()
	signNodeCerts(t, np, "n1", time.Now(), ips("192.0.2.5")...)
	if moved, err := servingMoved(np, "n1", ips("192.0.2.5")); moved != "" || err != nil {
		t.Errorf("same address: %q %v", moved, err)
	}
	if moved, err := servingMoved(np, "n1", ips("192.0.2.9")); !strings.Contains(moved, "192.0.2.9") || err != nil {
		t.Errorf("new address: %q %v", moved, err)
	}
	if _, err := servingMoved(datadir.New(t.TempDir()).Agent(), "n1", nil); err == nil {
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

// joinServer serves a real join endpoint of cas over a fake cluster, with
// the Node n1 and its password recorded unless deleted.
func joinServer(t *testing.T, cas clusterCAs, np datadir.Agent, log *slog.Logger, deleted bool) *httptest.Server {
	t.Helper()
	store := jointest.NewStore()
	ctx := context.Background()
	if _, err := store.EnsureTokens(ctx, "server-secret-0123456789", "agent-secret-0123456789"); err != nil {
		t.Fatal(err)
	}
	password, err := nodePassword(np.NodePassword())
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
	h := jointest.NewHandler(jointest.CAs{Server: cas.Server, Client: cas.Client, Kubelet: cas.Kubelet}, store, log)
	h.Cluster = join.Cluster{ClusterCIDR: "10.42.0.0/16"}
	srv := jointest.Serve(t, h, nil)
	if err := saveState(np.JoinState(), &State{NodeName: "n1"}); err != nil {
		t.Fatal(err)
	}
	return srv
}

// TestBootstrapRenews: a joined agent whose certificates are due for
// renewal renews them at start with its own client certificate, with no
// token, through a real join endpoint.
func TestBootstrapRenews(t *testing.T) {
	np := datadir.New(t.TempDir()).Agent()
	// Certificates signed 270 days ago: 95 days left, inside the renewal window.
	ca := signNodeCerts(t, np, "n1", time.Now().Add(-280*24*time.Hour), ips("192.0.2.5")...)
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
	first, err := checkNodeCerts(np, "n1")
	if err != nil || time.Until(first.NotAfter) < 300*24*time.Hour {
		t.Errorf("after renewal: %v, %v", err, first.NotAfter)
	}
}

// TestBootstrapDeletedNode: a node deleted from the cluster gets no new
// certificates, and its agent stops with the reason and the remedy.
func TestBootstrapDeletedNode(t *testing.T) {
	np := datadir.New(t.TempDir()).Agent()
	ca := signNodeCerts(t, np, "n1", time.Now().Add(-280*24*time.Hour), ips("192.0.2.5")...)
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
	cfg.Token = config.Secret("K10" + token.CAHash(ca.Server.CertPEM) + "::node:agent-secret-0123456789")
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
	np := datadir.New(t.TempDir()).Agent()
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
	if !strings.Contains(logs.String(), "names the addresses 192.0.2.5, the node has 192.0.2.9") || !strings.Contains(logs.String(), "renewed the node's certificates") {
		t.Errorf("log:\n%s", logs.String())
	}
	if moved, err := servingMoved(np, "n1", ips("192.0.2.9")); moved != "" || err != nil {
		t.Errorf("after the renewal: %q %v", moved, err)
	}
}

// TestBootstrapUpgradesOneCA: an agent that joined a kasa with one CA
// (ca.crt alone) renews at start, with its old client certificate and no
// token, from a server that kept that CA as its server and client CA;
// afterwards its kubelet's serving certificate is the kubelet CA's, which
// the server CA does not sign, and it asks for nothing more.
func TestBootstrapUpgradesOneCA(t *testing.T) {
	np := datadir.New(t.TempDir()).Agent()
	now := time.Now()
	old := newCAs(t, now, true)
	writeNodeCerts(t, np, old, "n1", now, ips("192.0.2.5")...)
	upgraded := old
	upgraded.Kubelet = newCAs(t, now, false).Kubelet
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	srv := joinServer(t, upgraded, np, log, false)
	cfg := &config.AgentNode{DataDir: filepath.Dir(np.Root), Server: srv.URL, NodeName: "n1",
		NodeIPs: []netip.Addr{netip.MustParseAddr("192.0.2.5")}}
	if _, err := bootstrap(context.Background(), cfg, np, log); err != nil {
		t.Fatalf("bootstrap: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "signed by the cluster's one CA") || !strings.Contains(logs.String(), "renewed the node's certificates") {
		t.Errorf("log:\n%s", logs.String())
	}
	for file, ca := range map[string]*pki.CA{"ca.crt": old.Server, "client-ca.crt": old.Server, "kubelet-ca.crt": upgraded.Kubelet} {
		if b, _ := os.ReadFile(np.TLS(file)); !bytes.Equal(b, ca.CertPEM) {
			t.Errorf("%s is not the cluster's", file)
		}
	}
	serving, err := pki.ReadCert(np.TLS("serving-kubelet.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if serving.CheckSignatureFrom(upgraded.Kubelet.Cert) != nil || serving.CheckSignatureFrom(old.Server.Cert) == nil {
		t.Error("the serving certificate is not the kubelet CA's alone")
	}
	logs.Reset()
	if _, err := bootstrap(context.Background(), cfg, np, log); err != nil || !strings.Contains(logs.String(), "joined before") || strings.Contains(logs.String(), "renew") {
		t.Errorf("the next start: %v\n%s", err, logs.String())
	}
}
