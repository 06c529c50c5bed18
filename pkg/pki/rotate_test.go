package pki

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// verify checks the certificate file (a leaf and its chain) against the
// CA certificates of roots (PEM) as a TLS peer would: the chain's other
// certificates are intermediates.
func verify(t *testing.T, certFile string, roots []byte, now time.Time) error {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := ParseCerts(b)
	if err != nil {
		t.Fatal(err)
	}
	opts := x509.VerifyOptions{Roots: x509.NewCertPool(), Intermediates: x509.NewCertPool(), CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	if !opts.Roots.AppendCertsFromPEM(roots) {
		t.Fatal("no roots")
	}
	for _, c := range chain[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err = chain[0].Verify(opts)
	return err
}

// TestRotateCA: during a rotation the new CA signs, its certificates carry
// the cross-certificate and verify against the old CA alone as against the
// new one, and the CA file trusts the old CA's certificates too; after
// FinishRotation the file trusts the new CA alone, so a certificate of the
// old key is refused, while the cross-certificate still lets a client that
// kept the old CA verify the new certificates. Certificates are issued
// again only when they must be.
func TestRotateCA(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	certFile, keyFile := filepath.Join(dir, "client-ca.crt"), filepath.Join(dir, "client-ca.key")
	old, err := LoadOrCreateCA(certFile, keyFile, "kasa-client-ca", RSA2048, now)
	if err != nil {
		t.Fatal(err)
	}
	oldPEM := old.CertPEM
	leaf := Leaf{CertFile: filepath.Join(dir, "a.crt"), KeyFile: filepath.Join(dir, "a.key"), CommonName: "a", Client: true, Server: true,
		IPs: []net.IP{net.ParseIP("127.0.0.1")}}
	if wrote, err := old.Ensure(leaf, now); err != nil || !wrote {
		t.Fatalf("Ensure: %v %v", wrote, err)
	}
	if wrote, _ := old.Ensure(leaf, now); wrote {
		t.Fatal("a current certificate was issued again")
	}
	oldLeaf, _ := os.ReadFile(leaf.CertFile)
	// A stray cross-certificate of another key (a rotation that stopped
	// before it wrote the new CA) is not the CA's chain.
	other, err := LoadOrCreateCA(filepath.Join(dir, "o.crt"), filepath.Join(dir, "o.key"), "other", ECDSAP256, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(CrossFile(certFile), other.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if ca, err := LoadCA(certFile, keyFile, now); err != nil || ca.Chain != nil {
		t.Fatalf("stray cross-certificate taken: %v", err)
	}

	rotated, err := RotateCA(certFile, keyFile, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RotateCA(certFile, keyFile, now); !errors.Is(err, ErrRotating) {
		t.Fatalf("second rotation: %v", err)
	}
	ca, err := LoadCA(certFile, keyFile, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(ca.Bundle) != 2 || ca.Chain == nil || !ca.Cert.Equal(rotated.Cert) || ca.Cert.Equal(old.Cert) || !ca.Bundle[1].Equal(old.Cert) {
		t.Fatalf("rotated CA: %d certificates, chain %t", len(ca.Bundle), ca.Chain != nil)
	}
	if _, isRSA := ca.Key.Public().(*rsa.PublicKey); !isRSA {
		t.Error("the new client CA's key is not RSA like the old one's")
	}
	if wrote, err := ca.Ensure(leaf, now); err != nil || !wrote {
		t.Fatalf("the old CA's certificate was kept: %v %v", wrote, err)
	}
	if wrote, _ := ca.Ensure(leaf, now); wrote {
		t.Fatal("a current certificate with its chain was issued again")
	}
	newLeaf, _ := os.ReadFile(leaf.CertFile)
	caFile, _ := os.ReadFile(certFile)
	if err := verify(t, leaf.CertFile, oldPEM, now); err != nil {
		t.Errorf("new certificate, old CA only: %v", err)
	}
	if err := verify(t, leaf.CertFile, caFile, now); err != nil {
		t.Errorf("new certificate, CA file: %v", err)
	}
	oldLeafFile := filepath.Join(dir, "old.crt")
	if err := os.WriteFile(oldLeafFile, oldLeaf, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := verify(t, oldLeafFile, caFile, now); err != nil {
		t.Errorf("old certificate, CA file during the rotation: %v", err)
	}
	// A leaf without the chain does not verify against the old CA: the
	// check above needs the cross-certificate.
	noChain := filepath.Join(dir, "nochain.crt")
	first, _ := ParseCerts(newLeaf)
	if err := os.WriteFile(noChain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: first[0].Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := verify(t, noChain, oldPEM, now); err == nil {
		t.Error("a new certificate without the cross-certificate verified against the old CA")
	}

	if err := FinishRotation(certFile); err != nil {
		t.Fatal(err)
	}
	if err := FinishRotation(certFile); !errors.Is(err, ErrNotRotating) {
		t.Fatalf("second finish: %v", err)
	}
	caFile, _ = os.ReadFile(certFile)
	if err := verify(t, oldLeafFile, caFile, now); err == nil {
		t.Error("after the rotation, the CA file still trusts a certificate of the old key")
	}
	if err := verify(t, leaf.CertFile, caFile, now); err != nil {
		t.Errorf("new certificate after the rotation: %v", err)
	}
	if err := verify(t, leaf.CertFile, oldPEM, now); err != nil {
		t.Errorf("new certificate, old CA only, after the rotation: %v", err)
	}
	ca, err = LoadCA(certFile, keyFile, now)
	if err != nil {
		t.Fatal(err)
	}
	if wrote, _ := ca.Ensure(leaf, now); wrote {
		t.Error("finishing the rotation issued the certificate again")
	}
	if renewed, err := ca.Renew(oldLeafFile, now); err != nil || renewed {
		t.Errorf("Renew of an old certificate after the rotation: %v %v", renewed, err)
	}
	// A second rotation replaces the cross-certificate.
	if _, err := RotateCA(certFile, keyFile, now); err != nil {
		t.Fatal(err)
	}
	ca, _ = LoadCA(certFile, keyFile, now)
	cross, _ := ReadCert(CrossFile(certFile))
	if !publicKeysEqual(cross.PublicKey, ca.Cert.PublicKey) || cross.CheckSignatureFrom(rotated.Cert) != nil {
		t.Error("the second rotation's cross-certificate is not the new CA signed by the previous one")
	}
}
