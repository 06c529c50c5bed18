package pki

import (
	"bytes"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCAAndLeafLifecycle(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ca, err := LoadOrCreateCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), "test-ca", RSA2048, now)
	if err != nil {
		t.Fatal(err)
	}
	if got := ca.Cert.NotAfter.Sub(now); got < CALifetime-time.Hour {
		t.Fatalf("CA lasts %s", got)
	}
	if st, _ := os.Stat(filepath.Join(dir, "ca.key")); st.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode %o", st.Mode().Perm())
	}

	// Loading again gives the same CA.
	again, err := LoadOrCreateCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), "test-ca", RSA2048, now)
	if err != nil || !bytes.Equal(again.CertPEM, ca.CertPEM) {
		t.Fatalf("reload: %v, certificate changed %v", err, !bytes.Equal(again.CertPEM, ca.CertPEM))
	}

	leaf := Leaf{CertFile: filepath.Join(dir, "s.crt"), KeyFile: filepath.Join(dir, "s.key"),
		CommonName: "kube-apiserver", Server: true, DNSNames: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}}
	wrote, err := ca.Ensure(leaf, now)
	if err != nil || !wrote {
		t.Fatalf("first Ensure: wrote=%v err=%v", wrote, err)
	}
	cert := mustRead(t, leaf.CertFile)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(ca), DNSName: "localhost", CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("leaf does not verify: %v", err)
	}
	if d := cert.NotAfter.Sub(now); d < LeafLifetime-time.Hour || d > LeafLifetime+time.Hour {
		t.Fatalf("leaf lasts %s", d)
	}

	// Reused while more than 90 days remain.
	if wrote, err := ca.Ensure(leaf, now.Add(200*24*time.Hour)); err != nil || wrote {
		t.Fatalf("Ensure at 200 days: wrote=%v err=%v", wrote, err)
	}
	// Renewed when fewer remain, keeping the key.
	keyBefore, _ := os.ReadFile(leaf.KeyFile)
	later := now.Add(280 * 24 * time.Hour)
	if wrote, err := ca.Ensure(leaf, later); err != nil || !wrote {
		t.Fatalf("Ensure at 280 days: wrote=%v err=%v", wrote, err)
	}
	keyAfter, _ := os.ReadFile(leaf.KeyFile)
	if string(keyBefore) != string(keyAfter) {
		t.Fatal("renewal replaced the key")
	}
	if na := mustRead(t, leaf.CertFile).NotAfter; na.Sub(later) < LeafLifetime-time.Hour {
		t.Fatalf("renewed leaf ends %s", na)
	}
	// A changed name list gets a new certificate.
	leaf.DNSNames = append(leaf.DNSNames, "api.example")
	if wrote, err := ca.Ensure(leaf, later); err != nil || !wrote {
		t.Fatalf("Ensure with a new SAN: wrote=%v err=%v", wrote, err)
	}
	// A certificate from another CA is replaced.
	other, err := LoadOrCreateCA(filepath.Join(dir, "o.crt"), filepath.Join(dir, "o.key"), "other", ECDSAP256, now)
	if err != nil {
		t.Fatal(err)
	}
	if wrote, err := other.Ensure(leaf, later); err != nil || !wrote {
		t.Fatalf("Ensure under another CA: wrote=%v err=%v", wrote, err)
	}
}

func TestDamagedCAIsAnErrorNotAReplacement(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if _, err := LoadOrCreateCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), "x", ECDSAP256, now); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), "x", ECDSAP256, now); err == nil {
		t.Fatal("a damaged CA loaded")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "ca.crt")); string(b) != "garbage" {
		t.Fatal("the damaged CA file was overwritten")
	}
	if err := os.Remove(filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), "x", ECDSAP256, now); err == nil {
		t.Fatal("a CA without its key loaded")
	}
}

func TestGenerateKeyFileKeepsExisting(t *testing.T) {
	f := filepath.Join(t.TempDir(), "sa.key")
	if err := GenerateKeyFile(f, RSA2048); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(f)
	if err := GenerateKeyFile(f, RSA2048); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(f)
	if string(a) != string(b) {
		t.Fatal("key replaced")
	}
}

func mustRead(t *testing.T, f string) *x509.Certificate {
	t.Helper()
	c, err := ReadCert(f)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pool(ca *CA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}
