package joinserver_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kasa-io/kasa/pkg/join"
	"github.com/kasa-io/kasa/pkg/join/joinclient"
	"github.com/kasa-io/kasa/pkg/join/joinserver"
	"github.com/kasa-io/kasa/pkg/join/jointest"
	"github.com/kasa-io/kasa/pkg/pki"
	"github.com/kasa-io/kasa/pkg/token"
)

// testServer serves a Handler over TLS with a certificate from its CA, in
// front of a stand-in for the API server's handlers.
func testServer(t *testing.T, s *joinserver.Store) (*httptest.Server, *joinserver.Handler, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	h := jointest.NewHandler(jointest.NewCAs(t), s, slog.New(slog.NewTextHandler(&logs, nil)))
	h.Reserved = []string{"10.43.0.1", "api.example.com"}
	h.Cluster = join.Cluster{ClusterCIDR: "10.42.0.0/16", FlannelBackend: "vxlan"}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "api") })
	return jointest.Serve(t, h, next), h, &logs
}

func TestJoin(t *testing.T) {
	ctx := context.Background()
	s := jointest.NewStore(&discoveryv1.EndpointSlice{
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

	caPEM, pinned, err := joinclient.FetchCA(ctx, srv.URL, full)
	if err != nil || !pinned || !bytes.Equal(caPEM, h.ServerCA.CertPEM) {
		t.Fatalf("FetchCA: %v pinned=%v", err, pinned)
	}
	req, keys := jointest.Request(t, "worker-1")
	resp, err := joinclient.Join(ctx, srv.URL, caPEM, full, req)
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
	for _, l := range join.NodeCerts("worker-1", nil) {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM([]byte(resp.ClientCA))
		if l.Server {
			pool = x509.NewCertPool()
			pool.AppendCertsFromPEM([]byte(resp.KubeletCA))
		}
		name := join.CertName(l)
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

	refused := func(tok token.Token, req join.Request, want string) {
		t.Helper()
		_, err := joinclient.Join(ctx, srv.URL, caPEM, tok, req)
		if !errors.Is(err, joinclient.ErrRefused) || !strings.Contains(err.Error(), want) {
			t.Errorf("join of %s: %v, want %q", req.NodeName, err, want)
		}
		if strings.Contains(err.Error(), tok.Secret) {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
	wrong := full
	wrong.Secret = "nope"
	r2, _ := jointest.Request(t, "worker-2")
	refused(wrong, r2, "not accepted")
	serverReq := r2
	serverReq.Role = join.RoleServer
	refused(full, serverReq, "can only join agents")
	other, _ := jointest.Request(t, "worker-1")
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
	again, keys2 := jointest.Request(t, "worker-1")
	again.Password = req.Password
	renewed, err := joinclient.Renew(ctx, srv.URL, caPEM, cert, again)
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
	renewRefused := func(cert tls.Certificate, req join.Request, want string) {
		t.Helper()
		_, err := joinclient.Renew(ctx, srv.URL, caPEM, cert, req)
		if !errors.Is(err, joinclient.ErrRefused) || !strings.Contains(err.Error(), want) {
			t.Errorf("renewal of %s: %v, want %q", req.NodeName, err, want)
		}
	}
	forOther, _ := jointest.Request(t, "worker-9")
	renewRefused(cert, forOther, "client certificate was not accepted")
	wrongPassword := again
	wrongPassword.Password = "pw-not-the-nodes-0123456789"
	renewRefused(cert, wrongPassword, "belongs to another machine")
	asServer := again
	asServer.Role = join.RoleServer
	renewRefused(cert, asServer, "only renew an agent")
	// A certificate of another CA with the right name does not pass.
	// Nor does one of this cluster's other CAs: the server CA and the
	// kubelet CA sign no client certificates.
	_, otherCluster, _ := testServer(t, s)
	for what, ca := range map[string]*pki.CA{"another cluster's client CA": otherCluster.ClientCA, "the server CA": h.ServerCA, "the kubelet CA": h.KubeletCA} {
		forged, err := ca.Sign(keys["client-kubelet"].Public(), join.NodeCerts("worker-1", nil)[0], time.Now())
		if err != nil {
			t.Fatal(err)
		}
		fb, _ := pem.Decode(forged)
		t.Log("a node certificate signed by", what)
		renewRefused(tls.Certificate{Certificate: [][]byte{fb.Bytes}, PrivateKey: keys["client-kubelet"]}, again, "client certificate was not accepted")
	}

	// A short token pins nothing, and still joins.
	short := token.Token{Secret: "agent-secret"}
	if _, pinned, err := joinclient.FetchCA(ctx, srv.URL, short); err != nil || pinned {
		t.Errorf("short token: %v pinned=%v", err, pinned)
	}
	r3, _ := jointest.Request(t, "worker-3")
	if _, err := joinclient.Join(ctx, srv.URL, caPEM, short, r3); err != nil {
		t.Errorf("short token join: %v", err)
	}
}

// kubeletCert is the kubelet client certificate of a join's answer, with
// its key.
func kubeletCert(t *testing.T, resp *join.Response, keys map[string]*ecdsa.PrivateKey) tls.Certificate {
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
	s := jointest.NewStore()
	if _, err := s.EnsureTokens(ctx, "server-secret", "agent-secret"); err != nil {
		t.Fatal(err)
	}
	srv, h, logs := testServer(t, s)
	tok := token.Token{CAHash: token.CAHash(h.ServerCA.CertPEM), User: token.AgentUser, Secret: "agent-secret"}
	nodes := s.Client.CoreV1().Nodes()
	secrets := s.Client.CoreV1().Secrets(joinserver.Namespace)
	joinNode := func(name, password string) (join.Request, tls.Certificate) {
		t.Helper()
		req, keys := jointest.Request(t, name)
		if password != "" {
			req.Password = password
		}
		resp, err := joinclient.Join(ctx, srv.URL, h.ServerCA.CertPEM, tok, req)
		if err != nil {
			t.Fatalf("join of %s: %v", name, err)
		}
		// The kubelet registers its Node.
		if _, err := nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return req, kubeletCert(t, resp, keys)
	}
	renew := func(cert tls.Certificate, req join.Request) error {
		t.Helper()
		fresh, _ := jointest.Request(t, req.NodeName)
		fresh.Password = req.Password
		_, err := joinclient.Renew(ctx, srv.URL, h.ServerCA.CertPEM, cert, fresh)
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
	before, err := secrets.Get(ctx, "a1"+joinserver.NodePasswordSuffix, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// More than the limiter's 10 tries: a deleted node's own certificate is
	// not a guess, and keeps getting the reason, not 429.
	for range 12 {
		err = renew(certA, a)
		if !errors.Is(err, joinclient.ErrRefused) || !errors.Is(err, join.ErrNodeDeleted) ||
			!strings.Contains(err.Error(), "node a1 was deleted from the cluster; join it again with a token (--token)") {
			t.Fatalf("renewal after kasa kubectl delete node a1: %v", err)
		}
	}
	if _, err := nodes.Get(ctx, "a1", metav1.GetOptions{}); err == nil {
		t.Error("the refused renewal brought the Node back")
	}
	after, err := secrets.Get(ctx, "a1"+joinserver.NodePasswordSuffix, metav1.GetOptions{})
	if err != nil || !bytes.Equal(after.Data[joinserver.NodePasswordKey], before.Data[joinserver.NodePasswordKey]) {
		t.Errorf("the refused renewal touched the password secret: %v", err)
	}

	// An attacker with the deleted node's certificate and password: no
	// other name, taken or free, renews with it.
	asB := a
	asB.NodeName, asB.Password = "b1", b.Password
	asFree := a
	asFree.NodeName = "c1"
	for _, req := range []join.Request{asB, asFree} {
		err := renew(certA, req)
		if !errors.Is(err, joinclient.ErrRefused) || errors.Is(err, join.ErrNodeDeleted) || !strings.Contains(err.Error(), "client certificate was not accepted") {
			t.Errorf("renewal of %s with a1's certificate: %v", req.NodeName, err)
		}
	}
	if _, err := secrets.Get(ctx, "c1"+joinserver.NodePasswordSuffix, metav1.GetOptions{}); err == nil {
		t.Error("a refused renewal recorded a password for c1")
	}
	// b1 is untouched and renews.
	if err := renew(certB, b); err != nil {
		t.Errorf("renewal of b1: %v", err)
	}

	// The name is free for a join with a token (here from another machine);
	// its password is written again, even when the old Secret is gone too.
	if err := secrets.Delete(ctx, "a1"+joinserver.NodePasswordSuffix, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	a2, certA2 := joinNode("a1", "pw-a1-new-machine-0123456789")
	sec, err := secrets.Get(ctx, "a1"+joinserver.NodePasswordSuffix, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("no password secret after the join: %v", err)
	}
	if ok, _ := joinserver.CheckSecret(string(sec.Data[joinserver.NodePasswordKey]), a2.Password); !ok {
		t.Error("the password secret is not the joining machine's")
	}
	if err := renew(certA2, a2); err != nil {
		t.Errorf("renewal after joining again: %v", err)
	}
	// The old certificate of a1, from the machine that was deleted, still
	// cannot renew with its old password.
	if err := renew(certA, a); !errors.Is(err, joinclient.ErrRefused) || !strings.Contains(err.Error(), "belongs to another machine") {
		t.Errorf("the deleted machine's renewal after a1 joined again: %v", err)
	}

	// A Node without a kept password (the server's own) does not renew
	// through the join endpoint.
	srvReq, srvKeys := jointest.Request(t, "srv")
	crt, err := h.ClientCA.Sign(srvKeys["client-kubelet"].Public(), join.NodeCerts("srv", nil)[0], time.Now())
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

// TestRenewDuringRotation: while the CAs are rotated, a node renews with
// its certificate of the old client CA and gets certificates of the new
// ones with the cross-certificate, and both CAs of each kind; once the
// rotation is finished, a certificate of the old client CA renews nothing.
func TestRenewDuringRotation(t *testing.T) {
	ctx := context.Background()
	s := jointest.NewStore()
	if _, err := s.EnsureTokens(ctx, "server-secret", "agent-secret"); err != nil {
		t.Fatal(err)
	}
	cas := jointest.NewCAs(t)
	h := jointest.NewHandler(cas, s, slog.New(slog.DiscardHandler))
	srv := jointest.Serve(t, h, nil)
	tok := token.Token{CAHash: token.CAHash(cas.Server.CertPEM), User: token.AgentUser, Secret: "agent-secret"}
	req, keys := jointest.Request(t, "r1")
	resp, err := joinclient.Join(ctx, srv.URL, cas.Server.CertPEM, tok, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "r1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	oldCert := kubeletCert(t, resp, keys)

	rotated := cas.Rotate(t)
	h.SetCAs(rotated.Server, rotated.Client, rotated.Kubelet)
	resp, err = joinclient.Renew(ctx, srv.URL, cas.Server.CertPEM, oldCert, req)
	if err != nil {
		t.Fatalf("renewal with a certificate of the old client CA during the rotation: %v", err)
	}
	if resp.ClientCA != string(rotated.Client.CertPEM) || resp.KubeletCA != string(rotated.Kubelet.CertPEM) {
		t.Error("the renewal does not give the CA files of the rotation")
	}
	for name, crt := range resp.Certificates {
		chain, err := pki.ParseCerts([]byte(crt))
		if err != nil || len(chain) != 2 {
			t.Fatalf("%s: %d certificates, %v", name, len(chain), err)
		}
		ca := rotated.Client
		if name == "serving-kubelet" {
			ca = rotated.Kubelet
		}
		if chain[0].CheckSignatureFrom(ca.Cert) != nil || chain[1].CheckSignatureFrom(ca.Bundle[1]) != nil {
			t.Errorf("%s is not the new CA's with the cross-certificate", name)
		}
	}
	newCert := kubeletCert(t, resp, keys)

	for _, name := range []string{"server", "client", "kubelet"} {
		if err := pki.FinishRotation(filepath.Join(cas.Dir, name+"-ca.crt")); err != nil {
			t.Fatal(err)
		}
	}
	var finished [3]*pki.CA
	for i, name := range []string{"server", "client", "kubelet"} {
		if finished[i], err = pki.LoadCA(filepath.Join(cas.Dir, name+"-ca.crt"), filepath.Join(cas.Dir, name+"-ca.key"), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	h.SetCAs(finished[0], finished[1], finished[2])
	if _, err := joinclient.Renew(ctx, srv.URL, cas.Server.CertPEM, oldCert, req); !errors.Is(err, joinclient.ErrRefused) || !strings.Contains(err.Error(), "client certificate was not accepted") {
		t.Errorf("renewal with a certificate of the old client CA after the rotation: %v", err)
	}
	if _, err := joinclient.Renew(ctx, srv.URL, cas.Server.CertPEM, newCert, req); err != nil {
		t.Errorf("renewal with a certificate of the new client CA after the rotation: %v", err)
	}
}
