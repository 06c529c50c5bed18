package datastore

import (
	"errors"
	"strings"
	"testing"

	"github.com/kasa-io/kasa/pkg/config"
)

func TestRedact(t *testing.T) {
	tests := []struct {
		dsn, err string
	}{
		{"postgres://kasa:pa55word@db:5432/kasa", "dial postgres://kasa:pa55word@db:5432/kasa: refused"},
		{"postgres://kasa:p%40ss@db/kasa", "auth failed for p@ss"},
		{"mysql://root:hunter2@tcp(127.0.0.1:3306)/kine", "Error 1045: Access denied (using password: hunter2)"},
	}
	for _, tt := range tests {
		got := Redact(errors.New(tt.err), config.Secret(tt.dsn)).Error()
		for _, secret := range []string{"pa55word", "p@ss", "hunter2"} {
			if strings.Contains(got, secret) {
				t.Errorf("%q still holds a secret", got)
			}
		}
		if !strings.Contains(got, "<redacted>") {
			t.Errorf("%q: nothing redacted", got)
		}
	}
	plain := errors.New("no secret here")
	if !errors.Is(Redact(plain, "sqlite://x"), plain) {
		t.Error("an error without secrets should pass through unchanged")
	}
}

func TestRemedy(t *testing.T) {
	for _, c := range []struct{ err, want string }{
		{"Error 1045 (28000): Access denied for user 'kasa'@'localhost' (using password: YES)", "user or password"},
		{`pq: password authentication failed for user "kasa"`, "user or password"},
		{"Error 1044 (42000): Access denied for user 'weak'@'127.0.0.1' to database 'kasa'", "lacks privileges"},
		{"pq: permission denied to create database", "lacks privileges"},
		{"dial tcp 127.0.0.1:13399: connect: connection refused", "cannot be reached"},
		{"tls: failed to verify certificate: x509: certificate signed by unknown authority", "--datastore-cafile"},
		{"something else", ""},
	} {
		got := remedy(errors.New(c.err))
		if c.want == "" && got != "" || !strings.Contains(got, c.want) {
			t.Errorf("%q: remedy %q, want one with %q", c.err, got, c.want)
		}
	}
}
