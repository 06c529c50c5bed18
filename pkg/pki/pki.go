// Package pki makes and keeps the cluster's certificates: certificate
// authorities that last ten years and are replaced in two steps (rotate.go),
// and leaf certificates that last one year and are renewed when fewer than
// 90 days remain (RenewBefore).
package pki

import (
	"bytes"
	"cmp"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"slices"
	"time"

	"github.com/kasa-io/kasa/pkg/fileutil"
)

// Lifetimes.
const (
	CALifetime   = 10 * 365 * 24 * time.Hour
	LeafLifetime = 365 * 24 * time.Hour
	// backdate absorbs small clock differences between machines.
	backdate = 5 * time.Minute
	day      = 24 * time.Hour
	// shortLived is the lifetime under which the renewal and warning
	// windows are fractions of it (only the server's test-only
	// --test-cert-lifetime makes such certificates): a quarter of the life
	// is left for clients to pick up the renewed files, which upstream
	// clients read again every 5 minutes.
	shortLived = 30 * day
)

// RenewBefore is how long before its expiry a certificate that lives for
// lifetime is renewed: 90 days, or three quarters of a short life.
func RenewBefore(lifetime time.Duration) time.Duration {
	if lifetime < shortLived {
		return lifetime * 3 / 4
	}
	return 90 * day
}

// WarnBefore is how long before its expiry a certificate or CA that lives
// for lifetime is warned about: 30 days, or a quarter of a short life.
func WarnBefore(lifetime time.Duration) time.Duration {
	if lifetime < shortLived {
		return lifetime / 4
	}
	return 30 * day
}

// CheckEvery is how often certificates that live for lifetime are checked:
// daily, or 16 times in a short life.
func CheckEvery(lifetime time.Duration) time.Duration {
	return min(day, lifetime/16)
}

// Lifetime is how long cert was made to live (its backdating aside).
func Lifetime(cert *x509.Certificate) time.Duration {
	return cert.NotAfter.Sub(cert.NotBefore) - backdate
}

// RenewDue reports whether cert is within its renewal window at now, or
// not valid yet.
func RenewDue(cert *x509.Certificate, now time.Time) bool {
	return cert.NotAfter.Sub(now) < RenewBefore(Lifetime(cert)) || now.Before(cert.NotBefore)
}

// WarnDue reports whether cert is within its warning window at now.
func WarnDue(cert *x509.Certificate, now time.Time) bool {
	return cert.NotAfter.Sub(now) < WarnBefore(Lifetime(cert))
}

// CA is a certificate authority whose key is on disk.
type CA struct {
	// Cert is the certificate that signs: the first of the CA file.
	Cert *x509.Certificate
	// CertPEM is the whole CA file: Cert, and during a rotation
	// (RotateCA) the CA it replaces, so that whoever reads the file
	// trusts both.
	CertPEM []byte
	// Bundle is every certificate of the CA file, Cert first.
	Bundle []*x509.Certificate
	// Chain (PEM) follows every certificate the CA signs during a
	// rotation: Cert signed by the CA it replaces, so that a client that
	// trusts only that one still verifies the new certificates.
	Chain []byte
	Key   crypto.Signer
	// LeafLifetime is how long the certificates it signs live; zero is
	// the package's LeafLifetime.
	LeafLifetime time.Duration
}

// KeyType is the kind of key a new CA gets.
type KeyType int

const (
	// ECDSAP256 is small and fast to make; the default.
	ECDSAP256 KeyType = iota
	// RSA2048 signatures verify about twice as fast as ECDSA P-256 ones,
	// which matters for a CA whose client certificates the API server
	// verifies on every request.
	RSA2048
)

// LoadOrCreateCA loads the CA from certFile and keyFile, creating both when
// neither exists (with a key of the given type). A CA is never replaced
// silently: one that has expired or whose files are damaged is an error.
func LoadOrCreateCA(certFile, keyFile, commonName string, kt KeyType, now time.Time) (*CA, error) {
	certPEM, certErr := os.ReadFile(certFile)
	_, keyErr := os.Stat(keyFile)
	if errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist) {
		return createCA(certFile, keyFile, commonName, kt, now)
	}
	if certErr != nil {
		return nil, fmt.Errorf("read CA certificate: %w", certErr)
	}
	bundle, err := ParseCerts(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate %s: %w", certFile, err)
	}
	cert := bundle[0]
	chain, err := os.ReadFile(CrossFile(certFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("CA cross-certificate: %w", err)
	}
	key, err := readKey(keyFile)
	if err != nil {
		return nil, fmt.Errorf("CA key %s: %w", keyFile, err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("CA key %s does not belong to certificate %s", keyFile, certFile)
	}
	if now.After(cert.NotAfter) {
		return nil, fmt.Errorf("CA certificate %s expired on %s", certFile, cert.NotAfter.Format(time.DateOnly))
	}
	// The cross-certificate of a rotation is this CA's (its key) once the
	// rotation wrote the new CA.
	if cross, err := parseCert(chain); err != nil || !publicKeysEqual(cross.PublicKey, cert.PublicKey) {
		chain = nil
	}
	return &CA{Cert: cert, CertPEM: certPEM, Bundle: bundle, Chain: chain, Key: key}, nil
}

func createCA(certFile, keyFile, commonName string, kt KeyType, now time.Time) (*CA, error) {
	key, cert, certPEM, err := newCA(commonName, kt, now)
	if err != nil {
		return nil, err
	}
	if err := writeKey(keyFile, key); err != nil {
		return nil, err
	}
	if err := fileutil.WriteFile(certFile, certPEM, 0o644); err != nil {
		return nil, err
	}
	return &CA{Cert: cert, CertPEM: certPEM, Bundle: []*x509.Certificate{cert}, Key: key}, nil
}

// newCA makes a self-signed CA named commonName@<now in Unix seconds>.
func newCA(commonName string, kt KeyType, now time.Time) (crypto.Signer, *x509.Certificate, []byte, error) {
	key, err := newKey(kt)
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := caTemplate(pkix.Name{CommonName: fmt.Sprintf("%s@%d", commonName, now.Unix())}, now)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	return key, cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func caTemplate(subject pkix.Name, now time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               subject,
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

// Leaf describes a certificate signed by a CA.
type Leaf struct {
	CertFile     string
	KeyFile      string
	CommonName   string
	Organization []string
	Client       bool
	Server       bool
	DNSNames     []string
	IPs          []net.IP
}

// Ensure makes sure the leaf's files hold a certificate that this CA signed,
// with the wanted names, that is not due for renewal (RenewDue). It reuses the
// files when they qualify and writes new ones otherwise; it reports whether it
// wrote. The key is kept across renewals.
func (ca *CA) Ensure(l Leaf, now time.Time) (bool, error) {
	key, keyErr := readKey(l.KeyFile)
	if keyErr == nil {
		if b, err := os.ReadFile(l.CertFile); err == nil && ca.current(b, key, l, now) {
			return false, nil
		}
	}
	if keyErr != nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return false, err
		}
		if err := writeKey(l.KeyFile, k); err != nil {
			return false, err
		}
		key = k
	}
	certPEM, err := ca.Sign(key.Public(), l, now)
	if err != nil {
		return false, err
	}
	return true, fileutil.WriteFile(l.CertFile, certPEM, 0o644)
}

// Sign issues a certificate for pub as the leaf describes, in PEM form,
// followed by the CA's Chain.
func (ca *CA) Sign(pub crypto.PublicKey, l Leaf, now time.Time) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: l.CommonName, Organization: l.Organization},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(cmp.Or(ca.LeafLifetime, LeafLifetime)),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		DNSNames:     l.DNSNames,
		IPAddresses:  l.IPs,
	}
	if l.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	if l.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %s: %w", l.CommonName, err)
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca.Chain...), nil
}

// current reports whether the certificate file certPEM can be kept for
// the leaf: among others, the CA signed it and its chain is the CA's.
func (ca *CA) current(certPEM []byte, key crypto.Signer, l Leaf, now time.Time) bool {
	block, rest := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" || !bytes.Equal(rest, ca.Chain) {
		return false
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return false
	}
	if RenewDue(cert, now) || (Lifetime(cert)-cmp.Or(ca.LeafLifetime, LeafLifetime)).Abs() > time.Minute {
		return false
	}
	if cert.CheckSignatureFrom(ca.Cert) != nil || !publicKeysEqual(cert.PublicKey, key.Public()) {
		return false
	}
	if cert.Subject.CommonName != l.CommonName || !slices.Equal(cert.Subject.Organization, l.Organization) {
		return false
	}
	return sameSet(cert.DNSNames, l.DNSNames) && sameIPs(cert.IPAddresses, l.IPs)
}

// NotAfter reads a certificate file and returns when it expires.
func NotAfter(certFile string) (time.Time, error) {
	c, err := ReadCert(certFile)
	if err != nil {
		return time.Time{}, err
	}
	return c.NotAfter, nil
}

// GenerateKeyFile writes a new key of the given type to file unless one
// exists (used for the service-account signing key).
func GenerateKeyFile(file string, kt KeyType) error {
	if _, err := readKey(file); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("key %s: %w", file, err)
	}
	k, err := newKey(kt)
	if err != nil {
		return err
	}
	return writeKey(file, k)
}

func newKey(kt KeyType) (crypto.Signer, error) {
	if kt == RSA2048 {
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// ReadCert reads the PEM certificate in file.
func ReadCert(file string) (*x509.Certificate, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return parseCert(b)
}

func parseCert(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate found")
	}
	return x509.ParseCertificate(block.Bytes)
}

func readKey(file string) (crypto.Signer, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM key found")
	}
	switch block.Type {
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported key type %T", k)
		}
		return s, nil
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
	}
}

func writeKey(file string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return fileutil.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func sameIPs(a, b []net.IP) bool {
	norm := func(ips []net.IP) []string {
		out := make([]string, 0, len(ips))
		for _, ip := range ips {
			out = append(out, ip.String())
		}
		return out
	}
	return sameSet(norm(a), norm(b))
}

// EnsureKey returns the private key in file, making an ECDSA P-256 key there
// (mode 0600) when there is none.
func EnsureKey(file string) (crypto.Signer, error) {
	key, err := readKey(file)
	if err == nil {
		return key, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("key %s: %w", file, err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return k, writeKey(file, k)
}

// PublicKeyPEM encodes a public key in PEM (PKIX).
func PublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// CheckLeaf checks that certFile holds a certificate for the key in
// keyFile, signed by a CA certificate of caPEM, with the common name cn,
// and returns it.
func CheckLeaf(certFile, keyFile string, caPEM []byte, cn string) (*x509.Certificate, error) {
	bundle, err := ParseCerts(caPEM)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	ca := &CA{Cert: bundle[0], Bundle: bundle}
	cert, err := ReadCert(certFile)
	if err != nil {
		return nil, err
	}
	key, err := readKey(keyFile)
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("%s is not the certificate of %s", certFile, keyFile)
	}
	if !ca.Signed(cert) {
		return nil, fmt.Errorf("%s is not signed by the cluster CA", certFile)
	}
	if cert.Subject.CommonName != cn {
		return nil, fmt.Errorf("%s is for %q, not %q", certFile, cert.Subject.CommonName, cn)
	}
	return cert, nil
}

// LoadCA loads the CA of certFile and keyFile, which must both exist.
func LoadCA(certFile, keyFile string, now time.Time) (*CA, error) {
	if _, err := os.Stat(certFile); err != nil {
		return nil, err
	}
	if _, err := os.Stat(keyFile); err != nil {
		return nil, err
	}
	return LoadOrCreateCA(certFile, keyFile, "", ECDSAP256, now)
}

// Renew issues certFile again, for the same key, names and uses, with the
// lifetime it had, if ca signed it (or, during a rotation, the CA it
// replaces did); it reports whether one did.
func (ca *CA) Renew(certFile string, now time.Time) (bool, error) {
	cert, err := ReadCert(certFile)
	if err != nil {
		return false, err
	}
	if !ca.Signed(cert) {
		return false, nil
	}
	l := Leaf{CommonName: cert.Subject.CommonName, Organization: cert.Subject.Organization, DNSNames: cert.DNSNames, IPs: cert.IPAddresses,
		Client: slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth), Server: slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth)}
	signer := *ca
	signer.LeafLifetime = Lifetime(cert).Round(time.Minute)
	certPEM, err := signer.Sign(cert.PublicKey, l, now)
	if err != nil {
		return true, err
	}
	return true, fileutil.WriteFile(certFile, certPEM, 0o644)
}

// Certs is the CA's bundle: Cert, and during a rotation the CA it
// replaces.
func (ca *CA) Certs() []*x509.Certificate {
	if len(ca.Bundle) == 0 {
		return []*x509.Certificate{ca.Cert}
	}
	return ca.Bundle
}

// Signed reports whether a certificate of the CA's bundle signed cert.
func (ca *CA) Signed(cert *x509.Certificate) bool {
	for _, c := range ca.Certs() {
		if cert.CheckSignatureFrom(c) == nil {
			return true
		}
	}
	return false
}
