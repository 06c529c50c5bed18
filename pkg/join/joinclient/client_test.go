package joinclient

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/kasa-io/kasa/pkg/join/jointest"
	"github.com/kasa-io/kasa/pkg/token"
)

func TestFetchCAMismatch(t *testing.T) {
	var logs bytes.Buffer
	h := jointest.NewHandler(jointest.NewCAs(t), jointest.NewStore(), slog.New(slog.NewTextHandler(&logs, nil)))
	srv := jointest.Serve(t, h, nil)
	tok := token.Token{CAHash: strings.Repeat("0", 64), User: token.ServerUser, Secret: "s3cret"}
	_, _, err := FetchCA(context.Background(), srv.URL, tok)
	if !errors.Is(err, ErrCAMismatch) || !strings.Contains(err.Error(), "was not sent") {
		t.Errorf("FetchCA: %v", err)
	}
	if strings.Contains(logs.String(), "join") {
		t.Errorf("the server saw a join:\n%s", &logs)
	}
}

func TestClientErrors(t *testing.T) {
	ctx := context.Background()
	tok := token.Token{Secret: "x"}
	if _, _, err := FetchCA(ctx, "http://127.0.0.1:6443", tok); err == nil || !strings.Contains(err.Error(), "want https://HOST:6443") {
		t.Errorf("http URL: %v", err)
	}
	// A port where nothing listens.
	_, _, err := FetchCA(ctx, "https://127.0.0.1:1", tok)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("nothing listening: %v", err)
	}
}

// TestFetchCARotation: during a rotation of the CAs, /cacerts shows the
// new server CA and the old one, and the API server's certificate is the
// new CA's with the cross-certificate: a token that names either CA gets
// both, pinned. A server that shows the cluster's old CA beside a CA of its
// own, with a certificate of its own, is refused before the secret goes.
func TestFetchCARotation(t *testing.T) {
	ctx := context.Background()
	cas := jointest.NewCAs(t)
	oldHash := token.CAHash(cas.Server.CertPEM)
	rotated := cas.Rotate(t)
	srv := jointest.Serve(t, jointest.NewHandler(rotated, jointest.NewStore(), slog.New(slog.DiscardHandler)), nil)
	for name, hash := range map[string]string{"old": oldHash, "new": token.CAHash(rotated.Server.CertPEM)} {
		got, pinned, err := FetchCA(ctx, srv.URL, token.Token{CAHash: hash, User: token.ServerUser, Secret: "s3cret"})
		if err != nil || !pinned || !bytes.Equal(got, rotated.Server.CertPEM) {
			t.Errorf("token of the %s CA: pinned %t, %v", name, pinned, err)
		}
	}
	if got, err := FetchCAVerified(ctx, srv.URL, cas.Server.CertPEM); err != nil || !bytes.Equal(got, rotated.Server.CertPEM) {
		t.Errorf("a node that trusts the old CA only: %v", err)
	}

	var logs bytes.Buffer
	evil := jointest.NewCAs(t)
	shown := *evil.Server
	shown.CertPEM = append(append([]byte{}, evil.Server.CertPEM...), cas.Server.CertPEM...)
	evil.Server = &shown
	evilSrv := jointest.Serve(t, jointest.NewHandler(evil, jointest.NewStore(), slog.New(slog.NewTextHandler(&logs, nil))), nil)
	_, _, err := FetchCA(ctx, evilSrv.URL, token.Token{CAHash: oldHash, User: token.ServerUser, Secret: "s3cret"})
	if !errors.Is(err, ErrCAMismatch) || !strings.Contains(err.Error(), "was not sent") {
		t.Errorf("a server that shows the cluster's CA beside its own: %v", err)
	}
	if _, err := FetchCAVerified(ctx, evilSrv.URL, cas.Server.CertPEM); err == nil {
		t.Error("FetchCAVerified took a server that the CA did not sign")
	}
}
