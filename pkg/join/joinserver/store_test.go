package joinserver_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kasa-io/kasa/pkg/join"
	"github.com/kasa-io/kasa/pkg/join/joinserver"
	"github.com/kasa-io/kasa/pkg/join/jointest"
	"github.com/kasa-io/kasa/pkg/token"
)

func TestHashSecret(t *testing.T) {
	h, err := joinserver.HashSecret("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(h, "s3cret") || !strings.HasPrefix(h, "pbkdf2-sha256$") {
		t.Fatalf("hash %q", h)
	}
	if ok, err := joinserver.CheckSecret(h, "s3cret"); !ok || err != nil {
		t.Errorf("the right secret: %v %v", ok, err)
	}
	if ok, _ := joinserver.CheckSecret(h, "s3creT"); ok {
		t.Error("a wrong secret matched")
	}
	h2, _ := joinserver.HashSecret("s3cret")
	if h2 == h {
		t.Error("two hashes of one secret are equal: no salt")
	}
	for _, bad := range []string{"", "plain", "pbkdf2-sha256$x$a$b", "md5$1$a$b"} {
		if ok, err := joinserver.CheckSecret(bad, "s3cret"); ok || err == nil {
			t.Errorf("CheckSecret(%q) = %v, %v", bad, ok, err)
		}
	}
}

func TestAuthenticate(t *testing.T) {
	ctx := context.Background()
	s := jointest.NewStore()
	if _, err := s.EnsureTokens(ctx, "server-secret", "agent-secret"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s.Now = func() time.Time { return now }
	live, err := s.CreateBootstrap(ctx, time.Hour, "live")
	if err != nil {
		t.Fatal(err)
	}
	forever, err := s.CreateBootstrap(ctx, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	expired, err := s.CreateBootstrap(ctx, time.Minute, "")
	if err != nil {
		t.Fatal(err)
	}
	s.Now = func() time.Time { return now.Add(2 * time.Minute) }
	tests := []struct {
		user, secret, want string
	}{
		{token.ServerUser, "server-secret", join.RoleServer},
		{"", "server-secret", join.RoleServer},
		{token.AgentUser, "server-secret", join.RoleAgent},
		{token.AgentUser, "agent-secret", join.RoleAgent},
		{"", "agent-secret", join.RoleAgent},
		{token.ServerUser, "agent-secret", ""},
		{token.ServerUser, "wrong", ""},
		{"", "wrong", ""},
		{live.User, live.Secret, join.RoleAgent},
		{forever.User, forever.Secret, join.RoleAgent},
		{expired.User, expired.Secret, ""},
		{live.User, forever.Secret, ""},
		{"zzzzzz", live.Secret, ""},
		{"someone", "server-secret", ""},
	}
	for _, tt := range tests {
		got, err := s.Authenticate(ctx, tt.user, tt.secret)
		if err != nil || got != tt.want {
			t.Errorf("Authenticate(%q, %q) = %q, %v; want %q", tt.user, tt.secret, got, err, tt.want)
		}
	}

	// Rotation: the old secret stops, the new one works.
	if err := s.Rotate(ctx, false, "new-server"); err != nil {
		t.Fatal(err)
	}
	if err := s.Rotate(ctx, true, "new-agent"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ user, secret, want string }{
		{token.ServerUser, "server-secret", ""}, {token.ServerUser, "new-server", join.RoleServer},
		{token.AgentUser, "agent-secret", ""}, {token.AgentUser, "new-agent", join.RoleAgent},
	} {
		if got, _ := s.Authenticate(ctx, c.user, c.secret); got != c.want {
			t.Errorf("after rotation: Authenticate(%q, %q) = %q, want %q", c.user, c.secret, got, c.want)
		}
	}
	// A later start with the old secrets keeps the rotated ones.
	st, err := s.EnsureTokens(ctx, "server-secret", "agent-secret")
	if err != nil || !st.ServerStale || !st.AgentKept {
		t.Errorf("EnsureTokens after rotation: %+v %v", st, err)
	}
	if got, _ := s.Authenticate(ctx, token.ServerUser, "new-server"); got != join.RoleServer {
		t.Error("a restart with the old token undid the rotation")
	}
}

func TestBootstrapTokens(t *testing.T) {
	ctx := context.Background()
	s := jointest.NewStore()
	a, err := s.CreateBootstrap(ctx, time.Hour, "for the shop")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.CreateBootstrap(ctx, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	list, err := s.ListBootstrap(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %v %v", list, err)
	}
	for _, bt := range list {
		if bt.ID == a.User && (bt.Description != "for the shop" || bt.Expires.IsZero() || !bt.Authentication) {
			t.Errorf("token a listed as %+v", bt)
		}
		if bt.ID == b.User && !bt.Expires.IsZero() {
			t.Errorf("token b expires: %+v", bt)
		}
	}
	// Upstream's format: the Secret a kubeadm user knows.
	sec, err := s.Client.CoreV1().Secrets(joinserver.Namespace).Get(ctx, "bootstrap-token-"+a.User, metav1.GetOptions{})
	if err != nil || sec.Type != "bootstrap.kubernetes.io/token" || string(sec.Data["token-secret"]) != a.Secret {
		t.Fatalf("secret %+v %v", sec, err)
	}
	if err := s.DeleteBootstrap(ctx, a.String()); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteBootstrap(ctx, a.User); err == nil || !strings.Contains(err.Error(), "no token with id") {
		t.Errorf("deleting again: %v", err)
	}
	if err := s.DeleteBootstrap(ctx, "BAD"); err == nil || !strings.Contains(err.Error(), "not a token id") {
		t.Errorf("deleting a bad id: %v", err)
	}
	if got, _ := s.Authenticate(ctx, a.User, a.Secret); got != "" {
		t.Error("a deleted token still joins")
	}
}

func TestClaimNodeName(t *testing.T) {
	ctx := context.Background()
	s := jointest.NewStore(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "server-node"}})
	// A node that registered without a password (the server's own) is taken.
	if err := s.ClaimNodeName(ctx, "server-node", "pw-0123456789abcdef"); !errors.Is(err, joinserver.ErrNameTaken) {
		t.Errorf("claiming the server's node: %v", err)
	}
	// A free name is recorded, and the same machine may take it again...
	if err := s.ClaimNodeName(ctx, "a1", "pw-a1-0123456789abcdef"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "a1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.ClaimNodeName(ctx, "a1", "pw-a1-0123456789abcdef"); err != nil {
		t.Errorf("the same machine rejoining: %v", err)
	}
	// ...but another machine may not, until the node is deleted.
	err := s.ClaimNodeName(ctx, "a1", "pw-other-0123456789abcdef")
	if !errors.Is(err, joinserver.ErrNameTaken) || !strings.Contains(err.Error(), "kasa kubectl delete node a1") || !strings.Contains(err.Error(), "--node-name") {
		t.Errorf("another machine claiming a1: %v", err)
	}
	if err := s.Client.CoreV1().Nodes().Delete(ctx, "a1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.ClaimNodeName(ctx, "a1", "pw-other-0123456789abcdef"); err != nil {
		t.Errorf("claiming a deleted node's name: %v", err)
	}
	sec, err := s.Client.CoreV1().Secrets(joinserver.Namespace).Get(ctx, "a1.node-password.kasa", metav1.GetOptions{})
	if err != nil || strings.Contains(string(sec.Data["hash"]), "pw-other") {
		t.Errorf("password secret %v %v", sec, err)
	}
}
