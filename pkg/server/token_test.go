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
	full := token.Token{CAHash: token.CAHash(ca.CertPEM), User: token.ServerUser, Secret: short}.String()
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
	st, ignored, err := ensureToken(p.Token(), cfg.Token, ca)
	if err != nil || st.Secret != short || ignored {
		t.Fatalf("ensureToken: %v %v", ignored, err)
	}
	at, ignored, err := ensureAgentToken(p.AgentToken(), cfg.AgentToken, ca)
	if err != nil || at.Secret != short || ignored {
		t.Fatalf("ensureAgentToken: %v %v", ignored, err)
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
	// Another --token than the kept one starts the server with the kept
	// one (TestGivenTokenNotKept).
	if st, ignored, err := ensureToken(p.Token(), strong, ca); err != nil || !ignored || st.Secret != short {
		t.Errorf("another --token: ignored %v, %v", ignored, err)
	}
}

// TestGivenTokenNotKept: a --token or --agent-token that is not the one
// the data dir keeps (rotated since, or made elsewhere) never stops the
// server and never replaces the kept one: the server starts with its own
// and warns once, naming the token file and the fix but no secret. On the
// first start the given one becomes the cluster's.
func TestGivenTokenNotKept(t *testing.T) {
	const (
		first   = "first-server-s3cret-0123"
		rotated = "rotated-server-s3cret-01"
		agentA  = "first-agent-s3cret-01234"
		agentB  = "rotated-agent-s3cret-012"
	)
	p := NewPaths(t.TempDir())
	ca, err := pki.LoadOrCreateCA(p.TLS("ca.crt"), p.TLS("ca.key"), "test-ca", pki.ECDSAP256, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	otherCA := strings.Repeat("ab", 32)

	// The first start: the given secrets are written, in full form, 0600.
	st, ignored, err := ensureToken(p.Token(), first, ca)
	if err != nil || ignored || st.Secret != first || st.CAHash != token.CAHash(ca.CertPEM) {
		t.Fatalf("first start: ignored %v, %v", ignored, err)
	}
	at, ignored, err := ensureAgentToken(p.AgentToken(), agentA, ca)
	if err != nil || ignored || at.Secret != agentA || at.User != token.AgentUser {
		t.Fatalf("first start, agent: ignored %v, %v", ignored, err)
	}
	for _, f := range []string{p.Token(), p.AgentToken()} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, fi.Mode(), err)
		}
	}
	// A token naming another CA is refused on a first start: there is no
	// kept token to start with, and it cannot become this cluster's.
	fresh := NewPaths(t.TempDir())
	if _, _, err := ensureToken(fresh.Token(), config.Secret(token.Token{CAHash: otherCA, User: token.ServerUser, Secret: first}.String()), ca); err == nil {
		t.Error("a first start with another CA's token was accepted")
	}

	// kasa token rotate rewrote the files; the service's environment still
	// holds the first secrets.
	for f, tk := range map[string]token.Token{
		p.Token():      {CAHash: token.CAHash(ca.CertPEM), User: token.ServerUser, Secret: rotated},
		p.AgentToken(): {CAHash: token.CAHash(ca.CertPEM), User: token.AgentUser, Secret: agentB},
	} {
		if err := os.WriteFile(f, []byte(tk.String()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name         string
		given, agent config.Secret
		ignored      bool
		agentIgnored bool
		says         string
	}{
		{"the kept ones", rotated, agentB, false, false, ""},
		{"none given", "", "", false, false, ""},
		{"the kept one in full form", config.Secret(token.Token{CAHash: token.CAHash(ca.CertPEM), User: token.ServerUser, Secret: rotated}.String()), "", false, false, ""},
		{"older ones", first, agentA, true, true, "rotated since with kasa token rotate"},
		{"the agent secret as --token", agentB, "", true, false, "is this cluster's agent token"},
		{"the kept secret, another CA", config.Secret(token.Token{CAHash: otherCA, User: token.ServerUser, Secret: rotated}.String()), "", true, false, "names another cluster's CA"},
	} {
		st, ignored, err := ensureToken(p.Token(), c.given, ca)
		if err != nil || ignored != c.ignored || st.Secret != rotated {
			t.Errorf("%s: ignored %v, %v; want %v and the kept secret", c.name, ignored, err, c.ignored)
		}
		at, agentIgnored, err := ensureAgentToken(p.AgentToken(), c.agent, ca)
		if err != nil || agentIgnored != c.agentIgnored || at.Secret != agentB {
			t.Errorf("%s: agent ignored %v, %v; want %v and the kept secret", c.name, agentIgnored, err, c.agentIgnored)
		}
		var logs bytes.Buffer
		warnIgnoredTokens(slog.New(slog.NewTextHandler(&logs, nil)), p, ignored, agentIgnored, c.given, st, at)
		got := logs.String()
		if c.says == "" {
			if got != "" {
				t.Errorf("%s: a warning:\n%s", c.name, got)
			}
			continue
		}
		if !strings.Contains(got, c.says) || !strings.Contains(got, p.Token()) || !strings.Contains(got, "kasa.service.env") {
			t.Errorf("%s: warning:\n%s", c.name, got)
		}
		if c.agentIgnored && !strings.Contains(got, p.AgentToken()) {
			t.Errorf("%s: the agent warning names no file:\n%s", c.name, got)
		}
		for _, s := range []string{first, rotated, agentA, agentB} {
			if strings.Contains(got, s) {
				t.Errorf("%s: a secret in the warning:\n%s", c.name, got)
			}
		}
		if n := strings.Count(got, "level=WARN"); n != 1+btoi(c.agentIgnored) {
			t.Errorf("%s: %d warnings:\n%s", c.name, n, got)
		}
	}
	// The files still hold the rotated secrets.
	for f, want := range map[string]string{p.Token(): rotated, p.AgentToken(): agentB} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if tk, err := token.Parse(string(data)); err != nil || tk.Secret != want {
			t.Errorf("%s was changed", f)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
