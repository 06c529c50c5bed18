package pki

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestShortLivedRenewal: a CA whose leaves live 8 minutes (the server's
// --test-cert-lifetime) renews them when three quarters of their life has
// passed and warns in the last quarter; a year's leaves renew at 90 days and
// warn at 30; a leaf made with another lifetime is issued again.
func TestShortLivedRenewal(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ca, err := LoadOrCreateCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), "test-ca", ECDSAP256, now)
	if err != nil {
		t.Fatal(err)
	}
	ca.LeafLifetime = 8 * time.Minute
	leaf := Leaf{CertFile: filepath.Join(dir, "c.crt"), KeyFile: filepath.Join(dir, "c.key"), CommonName: "c", Client: true}
	if wrote, err := ca.Ensure(leaf, now); err != nil || !wrote {
		t.Fatalf("first Ensure: %v %v", wrote, err)
	}
	cert, err := ReadCert(leaf.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	if Lifetime(cert) != 8*time.Minute || CheckEvery(Lifetime(cert)) != 30*time.Second {
		t.Fatalf("lifetime %s, checked every %s", Lifetime(cert), CheckEvery(Lifetime(cert)))
	}
	for _, tc := range []struct {
		at     time.Duration
		status string
	}{
		{time.Minute, StatusOK},
		{2*time.Minute + time.Second, StatusRenew},
		{6*time.Minute + time.Second, StatusWarning},
		{8 * time.Minute, StatusExpired},
	} {
		if got := Status(cert, now.Add(tc.at)); got != tc.status {
			t.Errorf("at %s: %s, want %s", tc.at, got, tc.status)
		}
	}
	if wrote, _ := ca.Ensure(leaf, now.Add(time.Minute)); wrote {
		t.Error("renewed a minute into an 8-minute life")
	}
	if wrote, _ := ca.Ensure(leaf, now.Add(3*time.Minute)); !wrote {
		t.Error("not renewed 3 minutes into an 8-minute life")
	}
	// Back to a year: the short-lived leaf is issued again at once.
	ca.LeafLifetime = 0
	if wrote, _ := ca.Ensure(leaf, now.Add(3*time.Minute)); !wrote {
		t.Error("a leaf of another lifetime was kept")
	}
	cert, _ = ReadCert(leaf.CertFile)
	year := now.Add(3 * time.Minute)
	if Status(cert, year.Add(274*day)) != StatusOK || Status(cert, year.Add(276*day)) != StatusRenew || Status(cert, year.Add(336*day)) != StatusWarning {
		t.Errorf("a year's leaf: %s %s %s", Status(cert, year.Add(274*day)), Status(cert, year.Add(276*day)), Status(cert, year.Add(336*day)))
	}
	if CheckEvery(LeafLifetime) != day {
		t.Errorf("a year's leaf is checked every %s", CheckEvery(LeafLifetime))
	}
	// The CA warns 30 days before its end, and is never "renewal due".
	if Status(ca.Cert, now.Add(CALifetime-31*day)) != StatusOK || Status(ca.Cert, now.Add(CALifetime-29*day)) != StatusWarning {
		t.Errorf("CA: %s %s", Status(ca.Cert, now.Add(CALifetime-31*day)), Status(ca.Cert, now.Add(CALifetime-29*day)))
	}
}

// TestRenewFile: Renew issues a certificate again for its key, names and
// uses with a full lifetime, only when the CA signed it; another CA's is
// left alone.
func TestRenewFile(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ca, err := LoadOrCreateCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), "test-ca", ECDSAP256, now)
	if err != nil {
		t.Fatal(err)
	}
	other, err := LoadOrCreateCA(filepath.Join(dir, "o.crt"), filepath.Join(dir, "o.key"), "other-ca", ECDSAP256, now)
	if err != nil {
		t.Fatal(err)
	}
	leaf := Leaf{CertFile: filepath.Join(dir, "s.crt"), KeyFile: filepath.Join(dir, "s.key"), CommonName: "s", Organization: []string{"g"},
		Server: true, Client: true, DNSNames: []string{"s.example"}, IPs: []net.IP{net.ParseIP("192.0.2.1")}}
	if _, err := ca.Ensure(leaf, now); err != nil {
		t.Fatal(err)
	}
	before, _ := ReadCert(leaf.CertFile)
	if signed, err := other.Renew(leaf.CertFile, now.Add(day)); signed || err != nil {
		t.Fatalf("another CA renewed it: %v %v", signed, err)
	}
	later := now.Add(100 * day)
	if signed, err := ca.Renew(leaf.CertFile, later); !signed || err != nil {
		t.Fatalf("Renew: %v %v", signed, err)
	}
	after, _ := ReadCert(leaf.CertFile)
	if after.SerialNumber.Cmp(before.SerialNumber) == 0 || after.NotAfter.Sub(later) < LeafLifetime-time.Minute {
		t.Fatalf("not renewed: expires %s", after.NotAfter)
	}
	if !publicKeysEqual(after.PublicKey, before.PublicKey) || after.Subject.String() != before.Subject.String() ||
		!sameSet(after.DNSNames, before.DNSNames) || !sameIPs(after.IPAddresses, before.IPAddresses) || len(after.ExtKeyUsage) != 2 {
		t.Fatalf("renewed certificate differs: %v %v %v %v", after.Subject, after.DNSNames, after.IPAddresses, after.ExtKeyUsage)
	}
	if _, err := LoadCA(filepath.Join(dir, "none.crt"), filepath.Join(dir, "none.key"), now); !os.IsNotExist(err) {
		t.Errorf("LoadCA of missing files: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "none.crt")); !os.IsNotExist(err) {
		t.Error("LoadCA made a CA")
	}
}

// TestInventory lists each certificate of the folders' .crt files, a
// bundle's each, soonest expiry first, and skips a folder that is not there.
func TestInventory(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ca, err := LoadOrCreateCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), "test-ca", ECDSAP256, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Ensure(Leaf{CertFile: filepath.Join(dir, "c.crt"), KeyFile: filepath.Join(dir, "c.key"), CommonName: "c", Client: true}, now); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bundle.crt"), append(ca.CertPEM, ca.CertPEM...), 0o644); err != nil {
		t.Fatal(err)
	}
	infos, err := Inventory(now, dir, filepath.Join(dir, "absent"))
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 4 || infos[0].File != filepath.Join(dir, "c.crt") || infos[0].CA || !infos[1].CA || infos[0].Status != StatusOK {
		t.Fatalf("inventory: %+v", infos)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.crt"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Inventory(now, dir); err == nil {
		t.Error("a damaged file was listed")
	}
}
