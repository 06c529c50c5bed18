package tokenadmin

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/kasa-io/kasa/pkg/join"
	"github.com/kasa-io/kasa/pkg/join/joinserver"
	"github.com/kasa-io/kasa/pkg/pki"
	"github.com/kasa-io/kasa/pkg/token"
)

const hash = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// newAdmin is an Admin over a fake cluster that has a server and an agent
// secret, and the store that checks joins against them.
func newAdmin(t *testing.T) (*Admin, *joinserver.Store) {
	t.Helper()
	cs := fake.NewClientset()
	store := &joinserver.Store{Client: cs}
	if _, err := store.EnsureTokens(context.Background(), "server-secret-0123456789", "agent-secret-0123456789"); err != nil {
		t.Fatal(err)
	}
	return New(cs, hash), store
}

func TestRotate(t *testing.T) {
	ctx := context.Background()
	a, store := newAdmin(t)
	dataDir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dataDir, "server"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		agent      bool
		file, user string
		role       string
	}{
		{false, "token", token.ServerUser, join.RoleServer},
		{true, "agent-token", token.AgentUser, join.RoleAgent},
	} {
		r, err := a.Rotate(ctx, RotateOptions{Agent: tc.agent, DataDir: dataDir})
		if err != nil {
			t.Fatal(err)
		}
		if r.Token.CAHash != hash || r.Token.User != tc.user || token.CheckStrength(r.Token.Secret) != nil {
			t.Errorf("rotated to %+v", r.Token)
		}
		want := filepath.Join(dataDir, "server", tc.file)
		if r.File != want {
			t.Errorf("file %q, want %s", r.File, want)
		}
		data, err := os.ReadFile(want)
		if err != nil || string(data) != r.Token.String()+"\n" {
			t.Errorf("%s holds %q (%v), want the new token", want, data, err)
		}
		if st, err := os.Stat(want); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", want, st, err)
		}
		if role, _ := store.Authenticate(ctx, tc.user, r.Token.Secret); role != tc.role {
			t.Errorf("the new secret joins as %q, want %q", role, tc.role)
		}
	}
	if role, _ := store.Authenticate(ctx, token.ServerUser, "server-secret-0123456789"); role != "" {
		t.Error("the old server secret still joins")
	}

	// A given secret is taken as it is.
	r, err := a.Rotate(ctx, RotateOptions{Secret: "a-secret-of-my-own-0123", DataDir: dataDir})
	if err != nil || r.Token.Secret != "a-secret-of-my-own-0123" {
		t.Errorf("a given secret: %+v %v", r.Token, err)
	}
}

// TestRotateNoServerDir: a data dir without a server folder gets no token
// file, and the outcome says which folder was missing.
func TestRotateNoServerDir(t *testing.T) {
	a, store := newAdmin(t)
	dataDir := t.TempDir()
	r, err := a.Rotate(context.Background(), RotateOptions{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	if r.File != "" || r.ServerDir != filepath.Join(dataDir, "server") {
		t.Errorf("file %q, server dir %q", r.File, r.ServerDir)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "server")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the server folder was made: %v", err)
	}
	if role, _ := store.Authenticate(context.Background(), token.ServerUser, r.Token.Secret); role != join.RoleServer {
		t.Error("the cluster does not have the new secret")
	}
}

// TestRotateRefusesBadSecrets: a short or malformed secret is refused
// before the cluster is touched, and the error does not show it.
func TestRotateRefusesBadSecrets(t *testing.T) {
	a, store := newAdmin(t)
	for _, tc := range []struct {
		secret string
		want   error
	}{
		{"short-s3cret", token.ErrWeakSecret},
		{"two:words-0123456789abcdef", ErrMalformedSecret},
		{"K10" + hash + "::server:s3cret-0123456789abcdef", ErrMalformedSecret},
		{"abcdef.0123456789abcdef", ErrMalformedSecret},
	} {
		_, err := a.Rotate(context.Background(), RotateOptions{Secret: tc.secret, DataDir: t.TempDir()})
		if !errors.Is(err, tc.want) || strings.Contains(err.Error(), tc.secret) {
			t.Errorf("Rotate to %q: %v, want %v without the secret", tc.secret, err, tc.want)
		}
	}
	if role, _ := store.Authenticate(context.Background(), token.ServerUser, "server-secret-0123456789"); role != join.RoleServer {
		t.Error("a refused rotation changed the server secret")
	}
}

func TestCreateListDelete(t *testing.T) {
	ctx := context.Background()
	a, store := newAdmin(t)
	if _, err := a.Create(ctx, CreateOptions{TTL: -time.Hour}); !errors.Is(err, ErrInvalidTTL) {
		t.Errorf("a negative TTL: %v", err)
	}
	tok, err := a.Create(ctx, CreateOptions{TTL: time.Hour, Description: "for the shop"})
	if err != nil {
		t.Fatal(err)
	}
	if !tok.Bootstrap || tok.CAHash != hash {
		t.Errorf("created %+v, want a full bootstrap token", tok)
	}
	if role, _ := store.Authenticate(ctx, tok.User, tok.Secret); role != join.RoleAgent {
		t.Errorf("the new token joins as %q", role)
	}
	list, err := a.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != tok.User || list[0].Description != "for the shop" {
		t.Fatalf("list: %+v %v", list, err)
	}
	if err := a.Delete(ctx, tok.String()); err != nil {
		t.Fatal(err)
	}
	if list, _ := a.List(ctx); len(list) != 0 {
		t.Errorf("after delete: %+v", list)
	}
}

// TestConnectCAHash: a full token names the hash of the kubeconfig's CA.
func TestConnectCAHash(t *testing.T) {
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	c, err := pki.LoadOrCreateCA(caFile, filepath.Join(dir, "ca.key"), "test-ca", pki.ECDSAP256, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca := c.CertPEM
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", certificate-authority: `+caFile+`}}]
users: [{name: u, user: {}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := Connect(Cluster{Kubeconfig: kc})
	if err != nil {
		t.Fatal(err)
	}
	if a.caHash != token.CAHash(ca) {
		t.Errorf("hash %q, want %q", a.caHash, token.CAHash(ca))
	}
	if _, err := Connect(Cluster{Kubeconfig: filepath.Join(dir, "missing")}); err == nil || !strings.Contains(err.Error(), "no cluster to talk to") {
		t.Errorf("a missing kubeconfig: %v", err)
	}
}
