package server

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/token"
)

// TestCheckNewSecrets: a new --token or --agent-token that is malformed or
// weak is refused with the flag's name and without the secret; a kept one
// is left to ensureToken, each token file on its own.
func TestCheckNewSecrets(t *testing.T) {
	const (
		strong = "a-strong-s3cret-0123456789"
		short  = "short-s3cret"
	)
	hash := strings.Repeat("ab", 32)
	for _, tt := range []struct {
		name          string
		token, agent  config.Secret
		keep          []string // token files the data dir holds: "token", "agent-token"
		flag          string   // the flag refused; empty: accepted
		err           error
		secretInError string
	}{
		{name: "malformed --token", token: "K10" + config.Secret(hash[:10]) + "::server:" + strong, flag: "--token", err: token.ErrMalformed, secretInError: strong},
		{name: "--token with a colon", token: "user:" + strong, flag: "--token", err: token.ErrMalformed, secretInError: strong},
		{name: "malformed --agent-token", token: strong, agent: "K10" + config.Secret(hash) + "::node:", flag: "--agent-token", err: token.ErrMalformed},
		{name: "short --agent-token in full form", agent: config.Secret(token.Token{CAHash: hash, User: token.AgentUser, Secret: short}.String()), flag: "--agent-token", err: token.ErrWeakSecret, secretInError: short},
		{name: "short --agent-token, the server token kept", token: short, agent: short, keep: []string{"token"}, flag: "--agent-token", err: token.ErrWeakSecret, secretInError: short},
		{name: "short --token, the agent token kept", token: short, agent: short, keep: []string{"agent-token"}, flag: "--token", err: token.ErrWeakSecret, secretInError: short},
		{name: "both kept", token: "malformed:" + short, agent: short, keep: []string{"token", "agent-token"}},
		{name: "strong, in full form", token: config.Secret(token.Token{CAHash: hash, User: token.ServerUser, Secret: strong}.String()), agent: strong},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPaths(t.TempDir())
			if err := os.MkdirAll(p.Root, 0o700); err != nil {
				t.Fatal(err)
			}
			files := map[string]string{"token": p.Token(), "agent-token": p.AgentToken()}
			for _, f := range tt.keep {
				if err := os.WriteFile(files[f], []byte(short+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := checkNewSecrets(p, &config.Server{Token: tt.token, AgentToken: tt.agent})
			if tt.flag == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tt.err) || !strings.HasPrefix(err.Error(), tt.flag+": ") {
				t.Fatalf("%v, want %s refused (%v)", err, tt.flag, tt.err)
			}
			if tt.secretInError != "" && strings.Contains(err.Error(), tt.secretInError) {
				t.Errorf("the secret in %q", err)
			}
		})
	}
}
