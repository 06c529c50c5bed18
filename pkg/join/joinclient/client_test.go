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
