package agent

import (
	"bytes"
	"context"
	"crypto/tls"
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

// signNodeCerts writes the node certificates of name into np, signed by a
// new CA, as a join does.
func signNodeCerts(t *testing.T, np Paths, name string, now time.Time) *pki.CA {
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
	for _, l := range join.NodeCerts(name, nil) {
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

// TestBootstrapRenews: a joined agent whose certificates are due for
// renewal renews them at start with its own client certificate, with no
// token, through a real join endpoint.
func TestBootstrapRenews(t *testing.T) {
	np := NewPaths(t.TempDir())
	now := time.Now()
	// Certificates signed 270 days ago: 95 days left, inside the renewal window.
	ca := signNodeCerts(t, np, "n1", now.Add(-270*24*time.Hour))
	dir := t.TempDir()
	serving := pki.Leaf{CommonName: "server", Server: true, IPs: []net.IP{net.ParseIP("127.0.0.1")},
		CertFile: filepath.Join(dir, "s.crt"), KeyFile: filepath.Join(dir, "s.key")}
	if _, err := ca.Ensure(serving, now); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(serving.CertFile, serving.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	h := &join.Handler{CA: ca, Store: &join.Store{Client: fake.NewClientset()}, Log: log,
		Cluster: join.Cluster{ClusterCIDR: "10.42.0.0/16"}}
	srv := httptest.NewUnstartedServer(h.Wrap(http.NotFoundHandler()))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()
	if err := saveState(np.Join("etc", "join.json"), &State{NodeName: "n1"}); err != nil {
		t.Fatal(err)
	}

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
