package pki

import (
	"crypto/tls"
	"strings"
	"testing"

	cliflag "k8s.io/component-base/cli/flag"
)

// TestTLSSettings: the Kubernetes components' own flag parsers take the
// version and the suites (kube-apiserver would refuse to start otherwise),
// and every suite is a TLS 1.2 one with forward secrecy and AEAD.
func TestTLSSettings(t *testing.T) {
	v, err := cliflag.TLSVersion(TLSMinVersion)
	if err != nil || v != tls.VersionTLS12 {
		t.Fatalf("TLSVersion(%s) = %x, %v", TLSMinVersion, v, err)
	}
	ids, err := cliflag.TLSCipherSuites(strings.Split(CipherSuiteFlag(), ","))
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != len(CipherSuites) {
		t.Fatalf("%d suites parsed, want %d", len(ids), len(CipherSuites))
	}
	insecure := map[uint16]bool{}
	for _, s := range tls.InsecureCipherSuites() {
		insecure[s.ID] = true
	}
	for _, id := range ids {
		name := tls.CipherSuiteName(id)
		aead := strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20")
		if insecure[id] || !strings.HasPrefix(name, "TLS_ECDHE_") || !aead {
			t.Errorf("%s is not a modern suite", name)
		}
	}
}
