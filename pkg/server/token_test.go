package server

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/pki"
	"github.com/kasa-io/kasa/pkg/token"
)

// TestShortSecrets: a new server or agent secret shorter than 16
// characters is refused before anything is written; one the data dir
// already holds keeps working, with a warning.
func TestShortSecrets(t *testing.T) {
	const short, strong = "short-s3cret", "a-strong-s3cret-0123456789"
	p := NewPaths(t.TempDir())
	ca, err := pki.LoadOrCreateCA(p.TLS("ca.crt"), p.TLS("ca.key"), "test-ca", pki.ECDSAP256, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	full := token.Token{CAHash: ca.Hash(), User: token.ServerUser, Secret: short}.String()
	for _, c := range []struct {
		name string
		cfg  config.Server
		flag string // the flag refused; empty: accepted
	}{
		{"short --token", config.Server{Token: short}, "--token"},
		{"short --token in full form", config.Server{Token: config.Secret(full)}, "--token"},
		{"short --agent-token", config.Server{Token: strong, AgentToken: short}, "--agent-token"},
		{"strong ones", config.Server{Token: strong, AgentToken: strong}, ""},
		{"none: generated", config.Server{}, ""},
	} {
		err := checkNewSecrets(p, &c.cfg)
		if c.flag == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if !errors.Is(err, token.ErrWeakSecret) || !strings.HasPrefix(err.Error(), c.flag+":") || strings.Contains(err.Error(), short) {
			t.Errorf("%s: %v; want %s refused, without the secret", c.name, err, c.flag)
		}
	}

	// A data dir that holds short secrets (a cluster made before the
	// minimum): the same flags start it, and it warns.
	for _, f := range []string{p.Token(), p.AgentToken()} {
		if err := os.WriteFile(f, []byte(short+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.Server{Token: short, AgentToken: short}
	if err := checkNewSecrets(p, &cfg); err != nil {
		t.Fatalf("kept short secrets refused: %v", err)
	}
	st, err := ensureToken(p.Token(), cfg.Token, ca)
	if err != nil || st.Secret != short {
		t.Fatalf("ensureToken: %+v %v", st, err)
	}
	at, err := ensureAgentToken(p.AgentToken(), cfg.AgentToken, ca)
	if err != nil || at.Secret != short {
		t.Fatalf("ensureAgentToken: %+v %v", at, err)
	}
	var logs bytes.Buffer
	warnWeakSecrets(slog.New(slog.NewTextHandler(&logs, nil)), st, at)
	if got := logs.String(); !strings.Contains(got, "server token's secret has fewer than 16") || !strings.Contains(got, "agent token's secret has fewer than 16") ||
		!strings.Contains(got, "kasa token rotate") || strings.Contains(got, short) {
		t.Errorf("warnings:\n%s", got)
	}
	logs.Reset()
	warnWeakSecrets(slog.New(slog.NewTextHandler(&logs, nil)), token.Token{Secret: strong}, token.Token{})
	if logs.Len() != 0 {
		t.Errorf("a warning for a strong secret:\n%s", logs.String())
	}
	// Another --token than the kept one is still refused as before.
	if _, err := ensureToken(p.Token(), strong, ca); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("another --token: %v", err)
	}
}
