package datastore

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

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

// kine serves the etcd API over its socket from SQLite, and a scheme kasa
// does not take is named, without the rest of the endpoint (a password).
func TestOpen(t *testing.T) {
	dir, err := os.MkdirTemp("", "kine-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	k := &Kine{DBDir: dir}
	if err := k.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if eps := k.Endpoints(); len(eps) != 1 || eps[0] != "unix://"+k.SocketPath() {
		t.Fatalf("endpoints %v", eps)
	}
	if st, err := os.Stat(k.SocketPath()); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the socket: %v %v", st, err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: k.Endpoints(), DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "/registry/test/a", "one"); err != nil {
		t.Fatal(err)
	}
	got, err := cli.Get(ctx, "/registry/test/a")
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "one" {
		t.Fatalf("get: %v %v", got, err)
	}

	bad := &Kine{DBDir: t.TempDir(), Datastore: config.Datastore{Endpoint: config.Secret("nats://kasa:s3cret@127.0.0.1:4222")}}
	err = bad.Open(context.Background())
	if err == nil {
		bad.Close()
		t.Fatal("a nats:// endpoint was taken")
	}
	if !strings.Contains(err.Error(), `does not know the scheme "nats"`) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error: %v", err)
	}
}
