package join

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/kasa-io/kasa/pkg/pki"
	"github.com/kasa-io/kasa/pkg/token"
)

func TestHashSecret(t *testing.T) {
	h, err := HashSecret("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(h, "s3cret") || !strings.HasPrefix(h, "pbkdf2-sha256$") {
		t.Fatalf("hash %q", h)
	}
	if ok, err := CheckSecret(h, "s3cret"); !ok || err != nil {
		t.Errorf("the right secret: %v %v", ok, err)
	}
	if ok, _ := CheckSecret(h, "s3creT"); ok {
		t.Error("a wrong secret matched")
	}
	h2, _ := HashSecret("s3cret")
	if h2 == h {
		t.Error("two hashes of one secret are equal: no salt")
	}
	for _, bad := range []string{"", "plain", "pbkdf2-sha256$x$a$b", "md5$1$a$b"} {
		if ok, err := CheckSecret(bad, "s3cret"); ok || err == nil {
			t.Errorf("CheckSecret(%q) = %v, %v", bad, ok, err)
		}
	}
}

func newStore(objects ...any) *Store {
	cs := fake.NewClientset()
	for _, o := range objects {
		switch o := o.(type) {
		case *corev1.Node:
			_, _ = cs.CoreV1().Nodes().Create(context.Background(), o, metav1.CreateOptions{})
		case *discoveryv1.EndpointSlice:
			_, _ = cs.DiscoveryV1().EndpointSlices(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
		}
	}
	return &Store{Client: cs}
}

func TestAuthenticate(t *testing.T) {
	ctx := context.Background()
	s := newStore()
	if _, err := s.EnsureTokens(ctx, "server-secret", "agent-secret"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s.Now = func() time.Time { return now }
	live, err := s.CreateBootstrap(ctx, time.Hour, "live")
	if err != nil {
		t.Fatal(err)
	}
	forever, err := s.CreateBootstrap(ctx, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	expired, err := s.CreateBootstrap(ctx, time.Minute, "")
	if err != nil {
		t.Fatal(err)
	}
	s.Now = func() time.Time { return now.Add(2 * time.Minute) }
	tests := []struct {
		user, secret, want string
	}{
		{token.ServerUser, "server-secret", RoleServer},
		{"", "server-secret", RoleServer},
		{token.AgentUser, "server-secret", RoleAgent},
		{token.AgentUser, "agent-secret", RoleAgent},
		{"", "agent-secret", RoleAgent},
		{token.ServerUser, "agent-secret", ""},
		{token.ServerUser, "wrong", ""},
		{"", "wrong", ""},
		{live.User, live.Secret, RoleAgent},
		{forever.User, forever.Secret, RoleAgent},
		{expired.User, expired.Secret, ""},
		{live.User, forever.Secret, ""},
		{"zzzzzz", live.Secret, ""},
		{"someone", "server-secret", ""},
	}
	for _, tt := range tests {
		got, err := s.Authenticate(ctx, tt.user, tt.secret)
		if err != nil || got != tt.want {
			t.Errorf("Authenticate(%q, %q) = %q, %v; want %q", tt.user, tt.secret, got, err, tt.want)
		}
	}

	// Rotation: the old secret stops, the new one works.
	if err := s.Rotate(ctx, false, "new-server"); err != nil {
		t.Fatal(err)
	}
	if err := s.Rotate(ctx, true, "new-agent"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ user, secret, want string }{
		{token.ServerUser, "server-secret", ""}, {token.ServerUser, "new-server", RoleServer},
		{token.AgentUser, "agent-secret", ""}, {token.AgentUser, "new-agent", RoleAgent},
	} {
		if got, _ := s.Authenticate(ctx, c.user, c.secret); got != c.want {
			t.Errorf("after rotation: Authenticate(%q, %q) = %q, want %q", c.user, c.secret, got, c.want)
		}
	}
	// A later start with the old secrets keeps the rotated ones.
	st, err := s.EnsureTokens(ctx, "server-secret", "agent-secret")
	if err != nil || !st.ServerStale || !st.AgentKept {
		t.Errorf("EnsureTokens after rotation: %+v %v", st, err)
	}
	if got, _ := s.Authenticate(ctx, token.ServerUser, "new-server"); got != RoleServer {
		t.Error("a restart with the old token undid the rotation")
	}
}

func TestBootstrapTokens(t *testing.T) {
	ctx := context.Background()
	s := newStore()
	a, err := s.CreateBootstrap(ctx, time.Hour, "for the shop")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.CreateBootstrap(ctx, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	list, err := s.ListBootstrap(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %v %v", list, err)
	}
	for _, bt := range list {
		if bt.ID == a.User && (bt.Description != "for the shop" || bt.Expires.IsZero() || !bt.Authentication) {
			t.Errorf("token a listed as %+v", bt)
		}
		if bt.ID == b.User && !bt.Expires.IsZero() {
			t.Errorf("token b expires: %+v", bt)
		}
	}
	// Upstream's format: the Secret a kubeadm user knows.
	sec, err := s.Client.CoreV1().Secrets(Namespace).Get(ctx, "bootstrap-token-"+a.User, metav1.GetOptions{})
	if err != nil || sec.Type != "bootstrap.kubernetes.io/token" || string(sec.Data["token-secret"]) != a.Secret {
		t.Fatalf("secret %+v %v", sec, err)
	}
	if err := s.DeleteBootstrap(ctx, a.String()); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteBootstrap(ctx, a.User); err == nil || !strings.Contains(err.Error(), "no token with id") {
		t.Errorf("deleting again: %v", err)
	}
	if err := s.DeleteBootstrap(ctx, "BAD"); err == nil || !strings.Contains(err.Error(), "not a token id") {
		t.Errorf("deleting a bad id: %v", err)
	}
	if got, _ := s.Authenticate(ctx, a.User, a.Secret); got != "" {
		t.Error("a deleted token still joins")
	}
}

func TestClaimNodeName(t *testing.T) {
	ctx := context.Background()
	s := newStore(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "server-node"}})
	// A node that registered without a password (the server's own) is taken.
	if err := s.ClaimNodeName(ctx, "server-node", "pw-0123456789abcdef"); !errors.Is(err, ErrNameTaken) {
		t.Errorf("claiming the server's node: %v", err)
	}
	// A free name is recorded, and the same machine may take it again...
	if err := s.ClaimNodeName(ctx, "a1", "pw-a1-0123456789abcdef"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "a1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.ClaimNodeName(ctx, "a1", "pw-a1-0123456789abcdef"); err != nil {
		t.Errorf("the same machine rejoining: %v", err)
	}
	// ...but another machine may not, until the node is deleted.
	err := s.ClaimNodeName(ctx, "a1", "pw-other-0123456789abcdef")
	if !errors.Is(err, ErrNameTaken) || !strings.Contains(err.Error(), "kasa kubectl delete node a1") || !strings.Contains(err.Error(), "--node-name") {
		t.Errorf("another machine claiming a1: %v", err)
	}
	if err := s.Client.CoreV1().Nodes().Delete(ctx, "a1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.ClaimNodeName(ctx, "a1", "pw-other-0123456789abcdef"); err != nil {
		t.Errorf("claiming a deleted node's name: %v", err)
	}
	sec, err := s.Client.CoreV1().Secrets(Namespace).Get(ctx, "a1.node-password.kasa", metav1.GetOptions{})
	if err != nil || strings.Contains(string(sec.Data["hash"]), "pw-other") {
		t.Errorf("password secret %v %v", sec, err)
	}
}

// testServer serves a Handler over TLS with a certificate from its CA, in
// front of a stand-in for the API server's handlers.
func testServer(t *testing.T, s *Store) (*httptest.Server, *Handler, *bytes.Buffer) {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	cas := map[string]*pki.CA{}
	for _, name := range []string{"server", "client", "kubelet"} {
		ca, err := pki.LoadOrCreateCA(filepath.Join(dir, name+"-ca.crt"), filepath.Join(dir, name+"-ca.key"), name+"-ca", pki.ECDSAP256, now)
		if err != nil {
			t.Fatal(err)
		}
		cas[name] = ca
	}
	ca := cas["server"]
	leaf := pki.Leaf{CommonName: "server", Server: true, DNSNames: []string{"localhost"}, IPs: ipsOf("127.0.0.1"),
		CertFile: filepath.Join(dir, "s.crt"), KeyFile: filepath.Join(dir, "s.key")}
	if _, err := ca.Ensure(leaf, now); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	h := &Handler{ServerCA: ca, ClientCA: cas["client"], KubeletCA: cas["kubelet"], Reserved: []string{"10.43.0.1", "api.example.com"}, Store: s, Cluster: Cluster{ClusterCIDR: "10.42.0.0/16", FlannelBackend: "vxlan"},
		Log: slog.New(slog.NewTextHandler(&logs, nil))}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "api") })
	srv := httptest.NewUnstartedServer(h.Wrap(next))
	cert, err := loadPair(leaf.CertFile, leaf.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = cert
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, h, &logs
}

func request(t *testing.T, name string) (Request, map[string]*ecdsa.PrivateKey) {
	t.Helper()
	req := Request{NodeName: name, Role: RoleAgent, Password: "pw-" + name + "-0123456789abcdef", Addresses: []string{"192.0.2.7"}, Keys: map[string]string{}}
	keys := map[string]*ecdsa.PrivateKey{}
	for _, l := range NodeCerts(name, nil) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := pki.PublicKeyPEM(k.Public())
		req.Keys[CertName(l)] = string(pub)
		keys[CertName(l)] = k
	}
	return req, keys
}

func TestJoin(t *testing.T) {
	ctx := context.Background()
	s := newStore(&discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "kubernetes", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "kubernetes"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.1"}}, {Addresses: []string{"192.0.2.2"}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To[int32](6443)}},
	})
	if _, err := s.EnsureTokens(ctx, "server-secret", "agent-secret"); err != nil {
		t.Fatal(err)
	}
	srv, h, logs := testServer(t, s)
	full := token.Token{CAHash: token.CAHash(h.ServerCA.CertPEM), User: token.AgentUser, Secret: "agent-secret"}

	caPEM, pinned, err := FetchCA(ctx, srv.URL, full)
	if err != nil || !pinned || !bytes.Equal(caPEM, h.ServerCA.CertPEM) {
		t.Fatalf("FetchCA: %v pinned=%v", err, pinned)
	}
	req, keys := request(t, "worker-1")
	resp, err := Join(ctx, srv.URL, caPEM, full, req)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(resp.Servers, ",") != "192.0.2.1:6443,192.0.2.2:6443" || resp.Cluster.ClusterCIDR != "10.42.0.0/16" {
		t.Errorf("servers %v, cluster %+v", resp.Servers, resp.Cluster)
	}
	// Each certificate verifies with the CA of its kind, which the response
	// names, and never with the server CA: a node's serving certificate
	// does not pass for the API server's.
	if resp.ClientCA != string(h.ClientCA.CertPEM) || resp.KubeletCA != string(h.KubeletCA.CertPEM) {
		t.Errorf("the response names other CAs:\n%s\n%s", resp.ClientCA, resp.KubeletCA)
	}
	serverPool := x509.NewCertPool()
	serverPool.AppendCertsFromPEM(h.ServerCA.CertPEM)
	for _, l := range NodeCerts("worker-1", nil) {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM([]byte(resp.ClientCA))
		if l.Server {
			pool = x509.NewCertPool()
			pool.AppendCertsFromPEM([]byte(resp.KubeletCA))
		}
		name := CertName(l)
		block, _ := pem.Decode([]byte(resp.Certificates[name]))
		if block == nil {
			t.Fatalf("no certificate %s", name)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		usage := x509.ExtKeyUsageClientAuth
		if l.Server {
			usage = x509.ExtKeyUsageServerAuth
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("%s does not verify: %v", name, err)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: serverPool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
			t.Errorf("%s verifies with the server CA", name)
		}
		if !keys[name].PublicKey.Equal(c.PublicKey) || c.Subject.CommonName != l.CommonName {
			t.Errorf("%s: wrong key or name %q", name, c.Subject.CommonName)
		}
	}
	if strings.Contains(logs.String(), "agent-secret") || strings.Contains(logs.String(), req.Password) {
		t.Errorf("a secret in the log:\n%s", logs)
	}

	// Everything else still reaches the API server's handlers.
	r, err := srv.Client().Get(srv.URL + "/api")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if string(b) != "api" {
		t.Errorf("/api answered %q", b)
	}

	refused := func(tok token.Token, req Request, want string) {
		t.Helper()
		_, err := Join(ctx, srv.URL, caPEM, tok, req)
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), want) {
			t.Errorf("join of %s: %v, want %q", req.NodeName, err, want)
		}
		if strings.Contains(err.Error(), tok.Secret) {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
	wrong := full
	wrong.Secret = "nope"
	r2, _ := request(t, "worker-2")
	refused(wrong, r2, "not accepted")
	serverReq := r2
	serverReq.Role = RoleServer
	refused(full, serverReq, "can only join agents")
	other, _ := request(t, "worker-1")
	other.Password = "pw-another-machine-0123456789"
	// worker-1's Node exists once its kubelet registers.
	if _, err := s.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	refused(full, other, "belongs to another machine")
	bad := r2
	bad.NodeName = "Not_A_Name"
	refused(full, bad, "invalid node name")
	// The API server's names and addresses are no node's: the standard
	// ones, and the server's own (service IP, --tls-san).
	for _, name := range []string{"kubernetes", "localhost", "api.example.com"} {
		reserved := r2
		reserved.NodeName = name
		refused(full, reserved, "is the API server's")
	}
	for _, addr := range []string{"127.0.0.1", "::1", "10.43.0.1"} {
		reserved := r2
		reserved.Addresses = []string{"192.0.2.7", addr}
		refused(full, reserved, "is the API server's")
	}
	noKeys := r2
	noKeys.Keys = map[string]string{}
	refused(full, noKeys, "no public key")

	// A joined node renews with its kubelet client certificate, for its own
	// name and with its password.
	cert := kubeletCert(t, resp, keys)
	again, keys2 := request(t, "worker-1")
	again.Password = req.Password
	renewed, err := Renew(ctx, srv.URL, caPEM, cert, again)
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	if renewed.Certificates["client-kubelet"] == resp.Certificates["client-kubelet"] {
		t.Error("renewal returned the old certificate")
	}
	block, _ := pem.Decode([]byte(renewed.Certificates["client-kubelet"]))
	if c, _ := x509.ParseCertificate(block.Bytes); c == nil || !keys2["client-kubelet"].PublicKey.Equal(c.PublicKey) {
		t.Error("the renewed certificate is not for the keys sent")
	}
	renewRefused := func(cert tls.Certificate, req Request, want string) {
		t.Helper()
		_, err := Renew(ctx, srv.URL, caPEM, cert, req)
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), want) {
			t.Errorf("renewal of %s: %v, want %q", req.NodeName, err, want)
		}
	}
	forOther, _ := request(t, "worker-9")
	renewRefused(cert, forOther, "client certificate was not accepted")
	wrongPassword := again
	wrongPassword.Password = "pw-not-the-nodes-0123456789"
	renewRefused(cert, wrongPassword, "belongs to another machine")
	asServer := again
	asServer.Role = RoleServer
	renewRefused(cert, asServer, "only renew an agent")
	// A certificate of another CA with the right name does not pass.
	// Nor does one of this cluster's other CAs: the server CA and the
	// kubelet CA sign no client certificates.
	_, otherCluster, _ := testServer(t, s)
	for what, ca := range map[string]*pki.CA{"another cluster's client CA": otherCluster.ClientCA, "the server CA": h.ServerCA, "the kubelet CA": h.KubeletCA} {
		forged, err := ca.Sign(keys["client-kubelet"].Public(), NodeCerts("worker-1", nil)[0], time.Now())
		if err != nil {
			t.Fatal(err)
		}
		fb, _ := pem.Decode(forged)
		t.Log("a node certificate signed by", what)
		renewRefused(tls.Certificate{Certificate: [][]byte{fb.Bytes}, PrivateKey: keys["client-kubelet"]}, again, "client certificate was not accepted")
	}

	// A short token pins nothing, and still joins.
	short := token.Token{Secret: "agent-secret"}
	if _, pinned, err := FetchCA(ctx, srv.URL, short); err != nil || pinned {
		t.Errorf("short token: %v pinned=%v", err, pinned)
	}
	r3, _ := request(t, "worker-3")
	if _, err := Join(ctx, srv.URL, caPEM, short, r3); err != nil {
		t.Errorf("short token join: %v", err)
	}
}

// kubeletCert is the kubelet client certificate of a join's answer, with
// its key.
func kubeletCert(t *testing.T, resp *Response, keys map[string]*ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	block, _ := pem.Decode([]byte(resp.Certificates["client-kubelet"]))
	if block == nil {
		t.Fatal("no client-kubelet certificate")
	}
	return tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: keys["client-kubelet"]}
}

// TestRenewDeletedNode: after kasa kubectl delete node, the node's own
// certificate renews nothing, under its name or another, and writes
// nothing; a join with a token takes the name back.
func TestRenewDeletedNode(t *testing.T) {
	ctx := context.Background()
	s := newStore()
	if _, err := s.EnsureTokens(ctx, "server-secret", "agent-secret"); err != nil {
		t.Fatal(err)
	}
	srv, h, logs := testServer(t, s)
	tok := token.Token{CAHash: token.CAHash(h.ServerCA.CertPEM), User: token.AgentUser, Secret: "agent-secret"}
	nodes := s.Client.CoreV1().Nodes()
	secrets := s.Client.CoreV1().Secrets(Namespace)
	joinNode := func(name, password string) (Request, tls.Certificate) {
		t.Helper()
		req, keys := request(t, name)
		if password != "" {
			req.Password = password
		}
		resp, err := Join(ctx, srv.URL, h.ServerCA.CertPEM, tok, req)
		if err != nil {
			t.Fatalf("join of %s: %v", name, err)
		}
		// The kubelet registers its Node.
		if _, err := nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return req, kubeletCert(t, resp, keys)
	}
	renew := func(cert tls.Certificate, req Request) error {
		t.Helper()
		fresh, _ := request(t, req.NodeName)
		fresh.Password = req.Password
		_, err := Renew(ctx, srv.URL, h.ServerCA.CertPEM, cert, fresh)
		return err
	}
	a, certA := joinNode("a1", "")
	b, certB := joinNode("b1", "")
	if err := renew(certA, a); err != nil {
		t.Fatalf("renewal of a node that exists: %v", err)
	}

	if err := nodes.Delete(ctx, "a1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	before, err := secrets.Get(ctx, "a1"+nodePasswordSuffix, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// More than the limiter's 10 tries: a deleted node's own certificate is
	// not a guess, and keeps getting the reason, not 429.
	for range 12 {
		err = renew(certA, a)
		if !errors.Is(err, ErrRefused) || !errors.Is(err, ErrNodeDeleted) ||
			!strings.Contains(err.Error(), "node a1 was deleted from the cluster; join it again with a token (--token)") {
			t.Fatalf("renewal after kasa kubectl delete node a1: %v", err)
		}
	}
	if _, err := nodes.Get(ctx, "a1", metav1.GetOptions{}); err == nil {
		t.Error("the refused renewal brought the Node back")
	}
	after, err := secrets.Get(ctx, "a1"+nodePasswordSuffix, metav1.GetOptions{})
	if err != nil || !bytes.Equal(after.Data[nodePasswordKey], before.Data[nodePasswordKey]) {
		t.Errorf("the refused renewal touched the password secret: %v", err)
	}

	// An attacker with the deleted node's certificate and password: no
	// other name, taken or free, renews with it.
	asB := a
	asB.NodeName, asB.Password = "b1", b.Password
	asFree := a
	asFree.NodeName = "c1"
	for _, req := range []Request{asB, asFree} {
		err := renew(certA, req)
		if !errors.Is(err, ErrRefused) || errors.Is(err, ErrNodeDeleted) || !strings.Contains(err.Error(), "client certificate was not accepted") {
			t.Errorf("renewal of %s with a1's certificate: %v", req.NodeName, err)
		}
	}
	if _, err := secrets.Get(ctx, "c1"+nodePasswordSuffix, metav1.GetOptions{}); err == nil {
		t.Error("a refused renewal recorded a password for c1")
	}
	// b1 is untouched and renews.
	if err := renew(certB, b); err != nil {
		t.Errorf("renewal of b1: %v", err)
	}

	// The name is free for a join with a token (here from another machine);
	// its password is written again, even when the old Secret is gone too.
	if err := secrets.Delete(ctx, "a1"+nodePasswordSuffix, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	a2, certA2 := joinNode("a1", "pw-a1-new-machine-0123456789")
	sec, err := secrets.Get(ctx, "a1"+nodePasswordSuffix, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("no password secret after the join: %v", err)
	}
	if ok, _ := CheckSecret(string(sec.Data[nodePasswordKey]), a2.Password); !ok {
		t.Error("the password secret is not the joining machine's")
	}
	if err := renew(certA2, a2); err != nil {
		t.Errorf("renewal after joining again: %v", err)
	}
	// The old certificate of a1, from the machine that was deleted, still
	// cannot renew with its old password.
	if err := renew(certA, a); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "belongs to another machine") {
		t.Errorf("the deleted machine's renewal after a1 joined again: %v", err)
	}

	// A Node without a kept password (the server's own) does not renew
	// through the join endpoint.
	srvReq, srvKeys := request(t, "srv")
	crt, err := h.ClientCA.Sign(srvKeys["client-kubelet"].Public(), NodeCerts("srv", nil)[0], time.Now())
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(crt)
	if _, err := nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "srv"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := renew(tls.Certificate{Certificate: [][]byte{blk.Bytes}, PrivateKey: srvKeys["client-kubelet"]}, srvReq); err == nil || !strings.Contains(err.Error(), "belongs to another machine") {
		t.Errorf("renewal of a node with no password kept: %v", err)
	}
	if strings.Contains(logs.String(), a.Password) || strings.Contains(logs.String(), "agent-secret") {
		t.Errorf("a secret in the log:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "renewal of a deleted node") {
		t.Errorf("the refusal is not logged:\n%s", logs)
	}
}

func TestFetchCAMismatch(t *testing.T) {
	srv, _, logs := testServer(t, newStore())
	tok := token.Token{CAHash: strings.Repeat("0", 64), User: token.ServerUser, Secret: "s3cret"}
	_, _, err := FetchCA(context.Background(), srv.URL, tok)
	if !errors.Is(err, ErrCAMismatch) || !strings.Contains(err.Error(), "was not sent") {
		t.Errorf("FetchCA: %v", err)
	}
	if strings.Contains(logs.String(), "join") {
		t.Errorf("the server saw a join:\n%s", logs)
	}
}

func TestClientErrors(t *testing.T) {
	ctx := context.Background()
	tok := token.Token{Secret: "x"}
	if _, _, err := FetchCA(ctx, "http://127.0.0.1:6443", tok); err == nil || !strings.Contains(err.Error(), "want https://HOST:6443") {
		t.Errorf("http URL: %v", err)
	}
	// A port where nothing listens.
	_, _, err := FetchCA(ctx, "https://127.0.0.1:1", tok)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("nothing listening: %v", err)
	}
}

func TestRequestJSON(t *testing.T) {
	// The wire names are part of the protocol between versions.
	b, _ := json.Marshal(Request{NodeName: "n", Role: RoleAgent})
	for _, k := range []string{`"nodeName"`, `"role"`, `"password"`, `"addresses"`, `"keys"`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("request JSON %s lacks %s", b, k)
		}
	}
}

func ipsOf(s ...string) []net.IP {
	var out []net.IP
	for _, a := range s {
		out = append(out, net.ParseIP(a))
	}
	return out
}

func loadPair(certFile, keyFile string) (*tls.Config, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	// As kube-apiserver's: client certificates are asked for, and checked
	// by whoever reads them.
	return &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert}, nil
}
