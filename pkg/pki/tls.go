package pki

import (
	"crypto/tls"
	"strings"
)

// TLSMinVersion is the oldest TLS version that a kasa port accepts, in the
// spelling of the Kubernetes components' --tls-min-version flag.
const TLSMinVersion = "VersionTLS12"

// CipherSuites are the TLS 1.2 cipher suites that every kasa port offers:
// forward secrecy (ECDHE) and authenticated encryption (GCM, ChaCha20)
// only, for ECDSA and RSA keys. TLS 1.3 chooses among its own suites, all
// of them modern; Go does not let them be configured.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// CipherSuiteNames are CipherSuites by their IANA names, as the Kubernetes
// components' --tls-cipher-suites flag and the kubelet's tlsCipherSuites
// take them.
func CipherSuiteNames() []string {
	names := make([]string, len(CipherSuites))
	for i, id := range CipherSuites {
		names[i] = tls.CipherSuiteName(id)
	}
	return names
}

// CipherSuiteFlag is CipherSuiteNames as one --tls-cipher-suites value.
func CipherSuiteFlag() string { return strings.Join(CipherSuiteNames(), ",") }
