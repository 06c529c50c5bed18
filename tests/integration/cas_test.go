//go:build integration

package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kasa-io/kasa/pkg/join"
	"github.com/kasa-io/kasa/pkg/join/joinclient"
	"github.com/kasa-io/kasa/pkg/pki"
	"github.com/kasa-io/kasa/pkg/token"
	"github.com/kasa-io/kasa/tests/harness"
)

// oneCARevision is the last kasa commit whose clusters have one CA for
// everything; TestIntegrationUpgradeFromOneCA builds it.
const oneCARevision = "0da0c1f83fddd98ab7c0615d7db2f43be4766059"

// joinNode joins the node name with tok, from the address addr, and
// returns the answer and the node's private keys; it sends keys for the
// certificates a node of this version has, and for the names in more.
func joinNode(t *testing.T, s *harness.Server, tok token.Token, caPEM []byte, name, addr string, more ...string) (*join.Response, join.Request, map[string]*ecdsa.PrivateKey) {
	t.Helper()
	req := joinRequest(t, name, false)
	req.Addresses = []string{addr}
	keys := nodeKeys(t, &req, more...)
	var resp *join.Response
	if err := harness.Eventually(30*time.Second, func() error {
		var err error
		resp, err = joinclient.Join(context.Background(), s.URL(), caPEM, tok, req)
		return err
	}); err != nil {
		t.Fatalf("join of %s: %v", name, err)
	}
	return resp, req, keys
}

// pair is the TLS certificate of a join's answer named name, with its key.
func pair(t *testing.T, resp *join.Response, keys map[string]*ecdsa.PrivateKey, name string) tls.Certificate {
	t.Helper()
	return certificate(t, resp.Certificates[name], keys[name])
}

// impersonates reports whether a client that trusts caPEM (as every node
// and kubeconfig trusts the server CA) accepts cert when it connects to
// addr expecting the API server there: it serves cert on 127.0.0.1 and
// dials it with addr as the server name.
func impersonates(t *testing.T, cert tls.Certificate, caPEM []byte, addr string) error {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", l.Addr().String(),
		&tls.Config{RootCAs: pool, ServerName: addr, MinVersion: tls.VersionTLS12})
	if err != nil {
		return err
	}
	c.Close()
	return nil
}

// TestIntegrationSeparateCAs: a new cluster has a server CA, a client CA
// and a kubelet CA. A joined node's serving certificate, which names its
// own address, is refused by a client that trusts the server CA, as the
// API server's; a node cannot have the API server's names or addresses in
// it; and the API server takes no client certificate of the server CA.
func TestIntegrationSeparateCAs(t *testing.T) {
	s := startServer(t, "--tls-san", "api.example.com", "--tls-san", "192.0.2.200")
	tok, caPEM := serverTokenAndCA(t, s)
	tlsDir := filepath.Join(s.DataDir, "server", "tls")
	seen := map[string]string{}
	for _, f := range []string{"ca.crt", "client-ca.crt", "kubelet-ca.crt", "request-header-ca.crt"} {
		b, err := os.ReadFile(filepath.Join(tlsDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if other, ok := seen[string(b)]; ok {
			t.Errorf("%s is the same CA as %s", f, other)
		}
		seen[string(b)] = f
	}

	resp, _, keys := joinNode(t, s, tok, caPEM, "worker-1", "192.0.2.7")
	serving := pair(t, resp, keys, "serving-kubelet")
	// The attacker's move: the node serves its own certificate where a
	// client expects the API server, at the node's own address.
	var unknown x509.UnknownAuthorityError
	if err := impersonates(t, serving, caPEM, "192.0.2.7"); !errors.As(err, &unknown) {
		t.Errorf("a client trusting the server CA took the node's serving certificate: %v", err)
	}
	// The same move succeeds against a client of the kubelet CA (the API
	// server verifying kubelets), so the check itself can fail.
	if err := impersonates(t, serving, []byte(resp.KubeletCA), "192.0.2.7"); err != nil {
		t.Errorf("the kubelet CA does not verify the node's serving certificate: %v", err)
	}

	for _, c := range []struct{ name, addr string }{
		{"api.example.com", "192.0.2.8"},
		{"kubernetes.default.svc.cluster.local", "192.0.2.8"},
		{"worker-2", "127.0.0.1"},
		{"worker-2", "::1"},
		{"worker-2", "10.43.0.1"},
		{"worker-2", "192.0.2.200"},
	} {
		req := joinRequest(t, c.name, true)
		req.Addresses = []string{c.addr}
		_, err := joinclient.Join(context.Background(), s.URL(), caPEM, tok, req)
		if !errors.Is(err, joinclient.ErrRefused) || !strings.Contains(err.Error(), "is the API server's") {
			t.Errorf("a join as %s at %s: %v", c.name, c.addr, err)
		}
	}

	// Only the client CA's certificates are clients: one for system:admin
	// in system:masters signed with the server CA's or the kubelet CA's key
	// (read from the server's files, as a thief of one key would) is
	// refused; the same signed by the client CA is taken.
	rc, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.EnsureKey(filepath.Join(t.TempDir(), "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ca       string
		accepted bool
	}{{"ca", false}, {"kubelet-ca", false}, {"client-ca", true}} {
		ca, err := pki.LoadOrCreateCA(filepath.Join(tlsDir, c.ca+".crt"), filepath.Join(tlsDir, c.ca+".key"), "unused", pki.ECDSAP256, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		crt, err := ca.Sign(key.Public(), pki.Leaf{CommonName: "system:admin", Organization: []string{"system:masters"}, Client: true}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cfg := *rc
		cfg.CertFile, cfg.KeyFile = "", ""
		cfg.CertData = crt
		cfg.KeyData = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
		cs, err := kubernetes.NewForConfig(&cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = cs.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
		if c.accepted && err != nil {
			t.Errorf("a client certificate of %s: %v", c.ca, err)
		}
		if !c.accepted && !apierrors.IsUnauthorized(err) {
			t.Errorf("a client certificate of %s was not refused: %v", c.ca, err)
		}
	}
}

// buildPrevious builds the kasa of rev (without the bundle, which a
// server without its node does not need) and returns the binary.
func buildPrevious(t *testing.T, rev string) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	archive := osexec.Command("sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", root, rev, dir)
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("git archive %s (the test needs the repository's history: a clone, not a shallow one): %v\n%s", rev, err, out)
	}
	start := time.Now()
	build := osexec.Command("go", "build", "-o", filepath.Join(dir, "kasa"), "./cmd/kasa")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build of %s: %v\n%s", rev, err, out)
	}
	t.Logf("built kasa %s in %s", rev[:12], time.Since(start).Round(time.Second))
	return filepath.Join(dir, "kasa")
}

// TestIntegrationUpgradeFromOneCA: a cluster made by the kasa that had one
// CA keeps working after the upgrade, with no new join: its token, the
// admin kubeconfig it wrote and its nodes' certificates stay valid, and a
// node's renewal gives it a serving certificate of the new kubelet CA.
func TestIntegrationUpgradeFromOneCA(t *testing.T) {
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	prev := buildPrevious(t, oneCARevision)
	s := startServerWith(t, func(s *harness.Server) { s.Bin = prev })
	tok, caPEM := serverTokenAndCA(t, s)
	// A node of that version had two more client certificates.
	oldResp, oldReq, oldKeys := joinNode(t, s, tok, caPEM, "old-1", "192.0.2.7", earlierShared...)
	oldKubeconfig, err := os.ReadFile(s.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.DataDir, "server", "tls", "client-ca.crt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("kasa %s made a client CA: it is not the one-CA version (%v)", oneCARevision[:12], err)
	}
	if _, err := s.Stop(15 * time.Second); err != nil {
		t.Fatal(err)
	}

	s.Bin = bin
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
	if log, _ := os.ReadFile(s.LogPath()); !strings.Contains(string(log), "this cluster was made with one CA") {
		t.Error("the upgrade is not logged")
	}
	tok2, caPEM2 := serverTokenAndCA(t, s)
	if tok2.String() != tok.String() || string(caPEM2) != string(caPEM) {
		t.Error("the upgrade changed the token or the server CA")
	}
	// The admin kubeconfig of before, with the old CA's client certificate.
	kc := filepath.Join(t.TempDir(), "old.kubeconfig")
	if err := os.WriteFile(kc, oldKubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "old-1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the admin kubeconfig of before: %v", err)
	}
	// The node of before renews with its old client certificate, and gets a
	// serving certificate of the kubelet CA, which the server CA does not
	// verify.
	renewed, err := joinclient.Renew(ctx, s.URL(), caPEM, pair(t, oldResp, oldKeys, "client-kubelet"), oldReq)
	if err != nil {
		t.Fatalf("the old node's renewal: %v", err)
	}
	if renewed.ClientCA != string(caPEM) || renewed.KubeletCA == "" || renewed.KubeletCA == string(caPEM) {
		t.Errorf("after the upgrade the client CA should be the one CA, the kubelet CA a new one")
	}
	var unknown x509.UnknownAuthorityError
	if err := impersonates(t, pair(t, renewed, oldKeys, "serving-kubelet"), caPEM, "192.0.2.7"); !errors.As(err, &unknown) {
		t.Errorf("the renewed serving certificate passes for the API server's: %v", err)
	}
	// A new node joins with the token of before.
	if resp, _, _ := joinNode(t, s, tok, caPEM, "new-1", "192.0.2.8"); resp.KubeletCA != renewed.KubeletCA {
		t.Error("a new node got another kubelet CA")
	}
}
