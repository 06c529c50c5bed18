package up

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kasa-io/kasa/pkg/join"
	"github.com/kasa-io/kasa/pkg/join/joinclient"
	"github.com/kasa-io/kasa/pkg/kubeconfig"
	"github.com/kasa-io/kasa/pkg/pki"
	"github.com/kasa-io/kasa/pkg/token"
)

// testCA makes a CA and the admin kubeconfig a kasa server writes with it
// (its CA embedded), and returns both.
func testCA(t *testing.T) (*pki.CA, []byte) {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), "kasa-ca", pki.ECDSAP256, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "kasa.yaml")
	if err := kubeconfig.Write(file, 0o600, kubeconfig.Spec{Server: "https://127.0.0.1:6443", Embed: true,
		CAFile: filepath.Join(dir, "ca.crt"), CertFile: filepath.Join(dir, "ca.crt"), KeyFile: filepath.Join(dir, "ca.key")}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return ca, data
}

// TestClusterSecrets: a server secret and an agent secret are made on the
// first run, kept (0600) and the same on the next; a state file of an
// older kasa up gets an agent secret; the cluster file's token, bare or
// full, gives the server's secret and, in full, the CA it pins.
func TestClusterSecrets(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "up")
	c := &Cluster{Metadata: Metadata{Name: "shop"}}
	s, err := clusterSecrets(c, dir)
	if err != nil {
		t.Fatal(err)
	}
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	if !hex32.MatchString(s.server) || !hex32.MatchString(s.agent) || s.server == s.agent || s.pinnedCA != "" {
		t.Fatalf("made: %+v", s)
	}
	file := filepath.Join(dir, "shop.json")
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file: %v %v", fi.Mode(), err)
	}
	if again, err := clusterSecrets(c, dir); err != nil || again != s {
		t.Errorf("the next run: %+v %v, want %+v", again, err, s)
	}

	// A state file of an older kasa up: its token stays, an agent
	// secret is added.
	if err := os.WriteFile(file, []byte(`{"token":"old-server-secret-0123456789"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = clusterSecrets(c, dir)
	if err != nil || s.server != "old-server-secret-0123456789" || !hex32.MatchString(s.agent) {
		t.Fatalf("older state: %+v %v", s, err)
	}
	var st state
	if b, err := os.ReadFile(file); err != nil || json.Unmarshal(b, &st) != nil || st.Token != s.server || st.AgentToken != s.agent {
		t.Errorf("older state, kept: %s %v", b, err)
	}

	// The cluster file's token.
	c.Spec.Token = "typed-by-a-person-0123456789"
	if s, err := clusterSecrets(c, dir); err != nil || s.server != c.Spec.Token || s.pinnedCA != "" || s.agent != st.AgentToken {
		t.Errorf("a bare spec.token: %+v %v", s, err)
	}
	hash := strings.Repeat("ab", 32)
	c.Spec.Token = "K10" + hash + "::server:full-token-secret-0123456789"
	if s, err := clusterSecrets(c, dir); err != nil || s.server != "full-token-secret-0123456789" || s.pinnedCA != hash || s.agent != st.AgentToken {
		t.Errorf("a full spec.token: %+v %v", s, err)
	}
}

// TestAgentToken: agents get the agent secret in a full token that names
// the CA of the server's kubeconfig, the hash a server computes and the
// agent side checks /cacerts against; a cluster file's token that names
// another CA gives no token at all.
func TestAgentToken(t *testing.T) {
	ca, kc := testCA(t)
	s := secrets{server: "server-secret-0123456789", agent: "agent-secret-0123456789"}
	got, err := s.agentToken(kc)
	if err != nil {
		t.Fatal(err)
	}
	if want := "K10" + token.CAHash(ca.CertPEM) + "::node:agent-secret-0123456789"; got != want {
		t.Fatalf("agent token %q, want %q", got, want)
	}
	tok, err := token.Parse(got)
	if err != nil || tok.CAHash != token.CAHash(ca.CertPEM) || tok.User != token.AgentUser || tok.Secret != s.agent || tok.Bootstrap {
		t.Fatalf("parsed: %+v %v", tok, err)
	}

	// The agent side takes it as pinned against the server's CA, and
	// refuses another CA before it sends the secret.
	serve := func(caPEM []byte) string {
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != join.CACertsPath {
				t.Errorf("the agent asked for %s", r.URL.Path)
				http.NotFound(w, r)
				return
			}
			_, _ = w.Write(caPEM)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	if _, pinned, err := joinclient.FetchCA(context.Background(), serve(ca.CertPEM), tok); err != nil || !pinned {
		t.Errorf("the agent side, the server's CA: pinned %v, %v", pinned, err)
	}
	other, _ := testCA(t)
	if _, _, err := joinclient.FetchCA(context.Background(), serve(other.CertPEM), tok); !errors.Is(err, joinclient.ErrCAMismatch) {
		t.Errorf("the agent side, another CA: %v", err)
	}

	// A full token in the cluster file: its CA must be the server's.
	s.pinnedCA = token.CAHash(ca.CertPEM)
	if again, err := s.agentToken(kc); err != nil || again != got {
		t.Errorf("spec.token naming the server's CA: %q %v", again, err)
	}
	s.pinnedCA = token.CAHash(other.CertPEM)
	got, err = s.agentToken(kc)
	if !errors.Is(err, ErrTokenCA) || got != "" || !strings.Contains(err.Error(), token.CAHash(other.CertPEM)[:16]) || !strings.Contains(err.Error(), token.CAHash(ca.CertPEM)[:16]) {
		t.Errorf("spec.token naming another CA: %q %v", got, err)
	}
	if err != nil && (strings.Contains(err.Error(), s.agent) || strings.Contains(err.Error(), s.server)) {
		t.Errorf("the error shows a secret: %v", err)
	}

	// A kubeconfig without its CA.
	if _, err := (secrets{agent: "x"}).agentToken([]byte("apiVersion: v1\nkind: Config\nclusters: [{name: d, cluster: {server: https://x}}]\ncontexts: [{name: d, context: {cluster: d}}]\ncurrent-context: d\n")); err == nil ||
		!strings.Contains(err.Error(), "no CA certificate") {
		t.Errorf("no CA: %v", err)
	}
}

// TestParseTokens: the cluster file's token is a server's secret, bare or
// full; a token that joins agents only is refused, as is a host that sets
// a token of its own. No error shows the secret.
func TestParseTokens(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	for _, tt := range []struct {
		token, want string
	}{
		{"s3cret-typed-by-hand", ""},
		{"K10" + hash + "::server:s3cret-typed-by-hand", ""},
		{"K10" + hash + "::node:s3cret-typed-by-hand", `user "node", which joins agents only`},
		{"K10" + hash + "::abcdef.s3cret0123456789", "bootstrap token"},
		{"abcdef.s3cret0123456789", "bootstrap token"},
		{"K10abc::server:s3cret-typed-by-hand", "64 hex digits"},
		{"s3cret typed-by-hand", "malformed token"},
	} {
		_, err := Parse([]byte(good), env(map[string]string{"SHOP_TOKEN": tt.token}))
		if (tt.want == "" && err != nil) || (tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want))) {
			t.Errorf("token %q: %v, want %q", tt.token, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
	vars := env(map[string]string{"SHOP_TOKEN": "s3cret-typed-by-hand"})
	for _, tt := range []struct {
		edit func(string) string
		want string
	}{
		{func(s string) string { return strings.Replace(s, "KASA_DEBUG", "KASA_TOKEN", 1) }, "environment KASA_TOKEN: kasa up gives the hosts their tokens"},
		{func(s string) string { return strings.Replace(s, "KASA_DEBUG", "KASA_AGENT_TOKEN_FILE", 1) }, "environment KASA_AGENT_TOKEN_FILE"},
		{func(s string) string {
			return strings.Replace(s, "[--node-label, tier=front]", "[--agent-token=s3cret]", 1)
		}, "installFlags --agent-token: kasa up"},
		{func(s string) string { return strings.Replace(s, "[--node-label, tier=front]", "[-ts3cret]", 1) }, "installFlags -t: kasa up"},
		{func(s string) string { return strings.Replace(s, `["--node-taint"`, `["--token"`, 1) }, "spec.hosts[2] (10.0.0.3): installFlags --token"},
	} {
		_, err := Parse([]byte(tt.edit(good)), vars)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v, want %q", err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
}

// TestInstalledTokens: the tokens of a server installed before are read
// over SSH as root from its data dir (the install flags' --data-dir, else
// kasa's default) and replace the state dir's secrets, which the server
// would never take; a spec.token that is not the installed one is
// refused, naming no secret; a host without kasa changes nothing.
func TestInstalledTokens(t *testing.T) {
	for _, c := range []struct {
		flags []string
		want  string
	}{
		{nil, "/var/lib/kasa"},
		{[]string{"--node-label", "a=b"}, "/var/lib/kasa"},
		{[]string{"--data-dir", "/srv/kasa"}, "/srv/kasa"},
		{[]string{"--data-dir=/srv/k"}, "/srv/k"},
		{[]string{"-d", "/d"}, "/d"},
	} {
		if got := installedDataDir(&Host{InstallFlags: c.flags}); got != c.want {
			t.Errorf("%v: data dir %s, want %s", c.flags, got, c.want)
		}
	}

	ctx := context.Background()
	dir := t.TempDir()
	keyFile, pub := clientKey(t, dir)
	port, _ := testSSHServer(t, pub)
	conn, err := Dial(ctx, Target{Address: "127.0.0.1", Port: port, User: "root", KeyPath: keyFile}, Auth{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	dataDir := filepath.Join(t.TempDir(), "data dir")
	server, agent, err := installedTokens(ctx, conn, dataDir, "")
	if err != nil || server.Secret != "" || agent.Secret != "" {
		t.Fatalf("nothing installed: %v", err)
	}
	hash := strings.Repeat("cd", 32)
	installed := token.Token{CAHash: hash, User: token.ServerUser, Secret: "installed-server-s3cret-01"}
	installedAgent := token.Token{CAHash: hash, User: token.AgentUser, Secret: "installed-agent-s3cret-012"}
	if err := os.MkdirAll(filepath.Join(dataDir, "server"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "server", "token"), []byte(installed.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if server, agent, err = installedTokens(ctx, conn, dataDir, ""); err != nil || server != installed || agent.Secret != "" {
		t.Fatalf("a server token only: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "server", "agent-token"), []byte(installedAgent.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if server, agent, err = installedTokens(ctx, conn, dataDir, ""); err != nil || server != installed || agent != installedAgent {
		t.Fatalf("both tokens: %v", err)
	}

	// The state dir's secrets (made by a first run on another workstation,
	// or before a kasa token rotate) give way to the installed ones.
	stateDir := filepath.Join(t.TempDir(), "up")
	c := &Cluster{Metadata: Metadata{Name: "shop"}}
	s, err := clusterSecrets(c, stateDir)
	if err != nil {
		t.Fatal(err)
	}
	changed, err := s.adopt(c, stateDir, dataDir, server, agent)
	if err != nil || s.server != installed.Secret || s.agent != installedAgent.Secret || len(changed) != 2 {
		t.Fatalf("adopt: %v %v", changed, err)
	}
	if again, err := clusterSecrets(c, stateDir); err != nil || again != s {
		t.Errorf("the state file does not hold the installed secrets: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(stateDir, "shop.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file: %v", err)
	}
	if changed, err := s.adopt(c, stateDir, dataDir, server, agent); err != nil || changed != nil {
		t.Errorf("adopt again: %v %v", changed, err)
	}
	// A server with no agent token keeps the state dir's.
	if changed, err := s.adopt(c, stateDir, dataDir, server, token.Token{}); err != nil || changed != nil || s.agent != installedAgent.Secret {
		t.Errorf("no agent token installed: %v %v", changed, err)
	}

	// spec.token: the installed one is taken; another is refused.
	c.Spec.Token = installed.String()
	if s, err = clusterSecrets(c, stateDir); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.adopt(c, stateDir, dataDir, server, agent); err != nil || changed != nil {
		t.Errorf("spec.token the installed one: %v %v", changed, err)
	}
	c.Spec.Token = "typed-by-a-person-0123456789"
	if s, err = clusterSecrets(c, stateDir); err != nil {
		t.Fatal(err)
	}
	_, err = s.adopt(c, stateDir, dataDir, server, agent)
	if err == nil || !strings.Contains(err.Error(), "spec.token is not the token of the server installed there ("+dataDir+"/server/token)") ||
		strings.Contains(err.Error(), installed.Secret) || strings.Contains(err.Error(), c.Spec.Token) {
		t.Errorf("another spec.token: %v", err)
	}
}
