package pki

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kasa-io/kasa/pkg/fileutil"
)

// A CA is replaced in two steps, so that nothing that trusts it stops
// working in between:
//
//  1. RotateCA makes a new CA with a new key. The CA file then holds the
//     new certificate first (it signs from now on) and the old one after
//     it, so that every reader of the file trusts both. The
//     cross-certificate (the new CA's name and key, signed by the old key)
//     follows every certificate the new CA signs, so that a client that
//     still trusts only the old CA verifies them too.
//  2. Once every node has the new files, FinishRotation drops the old
//     certificate from the CA file: nothing that reads it trusts the old
//     CA any more, so a certificate signed with the old key is refused.
//     The cross-certificate stays after the certificates the new CA signs
//     (until the next rotation): it lets a client that still holds only
//     the old CA (a kubeconfig copied elsewhere, a pod that read its CA
//     once) verify them, and grants nothing to whoever has the old key.

// ErrRotating is returned by RotateCA while a rotation is not finished.
var ErrRotating = errors.New("a rotation of this CA is not finished")

// ErrNotRotating is returned by FinishRotation when no rotation is under
// way.
var ErrNotRotating = errors.New("no rotation of this CA is under way")

// CrossFile is where the cross-certificate of the CA in certFile is kept
// (ca.crt: ca-cross.crt).
func CrossFile(certFile string) string {
	return strings.TrimSuffix(certFile, ".crt") + "-cross.crt"
}

// Rotating reports whether the CA of certFile is being rotated: its file
// holds the CA it replaces too.
func Rotating(certFile string) (bool, error) {
	b, err := os.ReadFile(certFile)
	if err != nil {
		return false, err
	}
	certs, err := ParseCerts(b)
	if err != nil {
		return false, fmt.Errorf("CA certificate %s: %w", certFile, err)
	}
	return len(certs) > 1, nil
}

// RotateCA replaces the CA of certFile and keyFile with a new one of the
// same name and key type, as step 1 above describes.
func RotateCA(certFile, keyFile string, now time.Time) (*CA, error) {
	if rotating, err := Rotating(certFile); err != nil || rotating {
		return nil, errors.Join(ErrRotating, err)
	}
	old, err := LoadCA(certFile, keyFile, now)
	if err != nil {
		return nil, err
	}
	kt := ECDSAP256
	if _, ok := old.Key.(*rsa.PrivateKey); ok {
		kt = RSA2048
	}
	name, _, _ := strings.Cut(old.Cert.Subject.CommonName, "@")
	key, cert, certPEM, err := newCA(name, kt, now)
	if err != nil {
		return nil, err
	}
	// The cross-certificate: the new CA's name and key (and key id, which
	// chain building matches), issued by the old CA.
	tmpl := caTemplate(cert.Subject, now)
	tmpl.SubjectKeyId = cert.SubjectKeyId
	tmpl.NotAfter = old.Cert.NotAfter
	der, err := x509.CreateCertificate(rand.Reader, tmpl, old.Cert, key.Public(), old.Key)
	if err != nil {
		return nil, fmt.Errorf("cross-sign the new CA: %w", err)
	}
	cross := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	oldPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: old.Cert.Raw})
	bundle := append(certPEM, oldPEM...)
	// The cross-certificate first (it follows the certificates the CA
	// signs only once they are the new CA's), then the key and its
	// certificate.
	if err := fileutil.WriteFile(CrossFile(certFile), cross, 0o644); err != nil {
		return nil, err
	}
	if err := writeKey(keyFile, key); err != nil {
		return nil, err
	}
	if err := fileutil.WriteFile(certFile, bundle, 0o644); err != nil {
		return nil, err
	}
	return &CA{Cert: cert, CertPEM: bundle, Bundle: []*x509.Certificate{cert, old.Cert}, Chain: cross, Key: key}, nil
}

// FinishRotation ends the rotation of the CA in certFile, as step 2 above
// describes.
func FinishRotation(certFile string) error {
	if rotating, err := Rotating(certFile); err != nil || !rotating {
		return errors.Join(ErrNotRotating, err)
	}
	b, err := os.ReadFile(certFile)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(b)
	return fileutil.WriteFile(certFile, pem.EncodeToMemory(block), 0o644)
}
