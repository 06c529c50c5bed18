//go:build integration

package integration

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kasa-io/kasa/pkg/join/joinclient"
	"github.com/kasa-io/kasa/pkg/token"
	"github.com/kasa-io/kasa/tests/harness"
)

// TestIntegrationRotatedTokenInEnv: a server installed with KASA_TOKEN and
// KASA_AGENT_TOKEN in its environment, whose secrets kasa token rotate
// (and rotate --agent) then replaced, is restarted with the old ones
// still in its environment, as systemd would: it comes up with the
// rotated secrets, says once for each which setting is not the cluster's
// and where its token is, shows no secret, keeps the token files, and the
// old secrets stay refused while the rotated server secret joins.
func TestIntegrationRotatedTokenInEnv(t *testing.T) {
	const (
		oldServer = "old-server-s3cret-0123456789"
		oldAgent  = "old-agent-s3cret-0123456789"
	)
	s := startServerWith(t, func(s *harness.Server) {
		s.Env = []string{"KASA_TOKEN=" + oldServer, "KASA_AGENT_TOKEN=" + oldAgent}
	})
	rotate := func(args ...string) token.Token {
		t.Helper()
		out, code, err := s.Run(append([]string{"token", "rotate", "--kubeconfig", s.Kubeconfig(), "--data-dir", s.DataDir}, args...)...)
		if err != nil || code != 0 {
			t.Fatalf("kasa token rotate %v: %d %v\n%s", args, code, err, out)
		}
		tk, err := token.Parse(strings.TrimSpace(out))
		if err != nil {
			t.Fatalf("kasa token rotate %v printed no token: %v", args, err)
		}
		return tk
	}
	newServer, newAgent := rotate(), rotate("--agent")

	if _, err := s.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	logBefore, err := os.ReadFile(s.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitReady(readyTimeout); err != nil {
		t.Fatalf("the restart with the old secrets in its environment: %v", err)
	}
	if !s.Running() {
		t.Fatal("the server exited after its restart")
	}

	// The restart's log: one warning for each setting, with the token
	// files and the fix, and no secret anywhere in the log.
	all, err := os.ReadFile(s.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	restart := string(all[len(logBefore):])
	for _, w := range []struct{ says, file string }{
		{"the given --token (KASA_TOKEN) is not this cluster's server token", filepath.Join(s.DataDir, "server", "token")},
		{"the given --agent-token (KASA_AGENT_TOKEN) is not this cluster's agent token", filepath.Join(s.DataDir, "server", "agent-token")},
	} {
		if n := strings.Count(restart, w.says); n != 1 {
			t.Errorf("%q: %d times in the restart's log, want once", w.says, n)
		}
		if !strings.Contains(restart, w.file) || !strings.Contains(restart, "kasa.service.env") {
			t.Errorf("the warning names neither %s nor the service's environment", w.file)
		}
	}
	for _, secret := range []string{oldServer, oldAgent, newServer.Secret, newAgent.Secret} {
		if strings.Contains(string(all), secret) {
			t.Error("a secret in the server's log")
		}
	}

	// The token files still hold the rotated secrets.
	for file, want := range map[string]token.Token{"token": newServer, "agent-token": newAgent} {
		data, err := os.ReadFile(filepath.Join(s.DataDir, "server", file))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := token.Parse(string(data)); err != nil || got != want {
			t.Errorf("server/%s no longer holds the rotated token: %v", file, err)
		}
	}

	// The old secrets join nothing; the rotated server secret joins.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	caPEM, err := os.ReadFile(filepath.Join(s.DataDir, "server", "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	hash := token.CAHash(caPEM)
	for _, c := range []struct {
		name string
		tok  token.Token
	}{
		{"the old server secret", token.Token{CAHash: hash, User: token.ServerUser, Secret: oldServer}},
		{"the old server secret as an agent", token.Token{CAHash: hash, User: token.AgentUser, Secret: oldServer}},
		{"the old agent secret", token.Token{CAHash: hash, User: token.AgentUser, Secret: oldAgent}},
	} {
		if _, err := joinclient.Join(ctx, s.URL(), caPEM, c.tok, joinRequest(t, "old-"+c.tok.User, true)); !errors.Is(err, joinclient.ErrRefused) {
			t.Errorf("%s: %v; want refused", c.name, err)
		}
	}
	if err := harness.Eventually(30*time.Second, func() error {
		_, err := joinclient.Join(ctx, s.URL(), caPEM, newServer, joinRequest(t, "rotated", true))
		return err
	}); err != nil {
		t.Errorf("a join with the rotated server secret: %v", err)
	}
}
