package pki

import (
	"cmp"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Certificate states, from good to bad.
const (
	StatusOK      = "ok"
	StatusRenew   = "renewal due" // inside the renewal window; the next check renews it
	StatusWarning = "expires soon"
	StatusExpired = "expired"
)

// Info describes one certificate found in a folder.
type Info struct {
	File      string    `json:"file"`
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	CA        bool      `json:"ca"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	// Status is one of the Status constants, at the time of the listing.
	Status string `json:"status"`
}

// Inventory lists every certificate in the .crt files of dirs (each
// certificate of a bundle), ordered by expiry. A folder that does not
// exist is skipped: an agent has no server folder.
func Inventory(now time.Time, dirs ...string) ([]Info, error) {
	var out []Info
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.crt"))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			certs, err := ParseCerts(b)
			if err != nil {
				return nil, errors.New(f + ": " + err.Error())
			}
			for _, c := range certs {
				out = append(out, Info{File: f, Subject: c.Subject.String(), Issuer: c.Issuer.String(), CA: c.IsCA,
					NotBefore: c.NotBefore, NotAfter: c.NotAfter, Status: Status(c, now)})
			}
		}
	}
	slices.SortStableFunc(out, func(a, b Info) int {
		return cmp.Or(a.NotAfter.Compare(b.NotAfter), strings.Compare(a.File, b.File))
	})
	return out, nil
}

// Status is the state of cert at now: expired, inside its warning window,
// inside its renewal window (leaves only: CAs are replaced, not renewed),
// or ok.
func Status(cert *x509.Certificate, now time.Time) string {
	switch {
	case !now.Before(cert.NotAfter):
		return StatusExpired
	case WarnDue(cert, now):
		return StatusWarning
	case !cert.IsCA && RenewDue(cert, now):
		return StatusRenew
	}
	return StatusOK
}

// ParseCerts parses every certificate of the PEM bundle b.
func ParseCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return out, nil
}
