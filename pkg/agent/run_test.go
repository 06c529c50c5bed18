package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
