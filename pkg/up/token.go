package up

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/kasa-io/kasa/pkg/datadir"
	"github.com/kasa-io/kasa/pkg/fileutil"
	"github.com/kasa-io/kasa/pkg/settings"
	"github.com/kasa-io/kasa/pkg/token"
)

// ErrTokenCA is returned when the server's CA is not the one the cluster
// file's token names: no agent is given a token then.
var ErrTokenCA = errors.New("the server's CA does not match spec.token")

// secrets are the join secrets kasa up gives a cluster: the server's, and
// the agents', which joins agents only. Agents get the agent secret in a
// full token, K10<hash of the server's CA>::node:<secret>, so that they
// check the server before they send it.
type secrets struct {
	// server is the server's secret (KASA_TOKEN of kasa server).
	server string
	// pinnedCA is the CA hash that a full token in the cluster file names;
	// empty for a bare secret or a generated one.
	pinnedCA string
	// agent is the agent secret (KASA_AGENT_TOKEN of kasa server).
	agent string
}

// state is what the state dir keeps per cluster, in <name>.json (0600).
type state struct {
	// Token is the server's secret, made on the first run unless the
	// cluster file gives one.
	Token string `json:"token,omitempty"`
	// AgentToken is the agents' secret, made on the first run.
	AgentToken string `json:"agentToken,omitempty"`
}

// clusterSecrets returns the cluster's secrets: the server's from the
// cluster file's token, else from the state dir; the agents' from the
// state dir. Those the state dir lacks are made and kept there.
func clusterSecrets(c *Cluster, stateDir string) (secrets, error) {
	var s secrets
	if c.Spec.Token != "" {
		t, err := token.Parse(c.Spec.Token)
		if err != nil {
			return s, fmt.Errorf("spec.token: %w", err)
		}
		s.server, s.pinnedCA = t.Secret, t.CAHash
	}
	file := filepath.Join(stateDir, c.Metadata.Name+".json")
	var st state
	b, err := os.ReadFile(file)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &st); err != nil {
			return s, fmt.Errorf("%s: %w", file, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return s, err
	}
	changed := false
	if st.AgentToken == "" {
		if st.AgentToken, err = token.NewSecret(); err != nil {
			return s, err
		}
		changed = true
	}
	s.agent = st.AgentToken
	if s.server == "" {
		if st.Token == "" {
			if st.Token, err = token.NewSecret(); err != nil {
				return s, err
			}
			changed = true
		}
		s.server = st.Token
	}
	if !changed {
		return s, nil
	}
	if b, err = json.Marshal(st); err != nil {
		return s, err
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return s, err
	}
	return s, fileutil.WriteFile(file, b, 0o600)
}

// agentToken is the token agents join with: the agent secret, pinned to
// the CA of the server's admin kubeconfig (read over SSH, from a host
// whose key was checked). A full token in the cluster file must name that
// CA, else nothing is returned.
func (s secrets) agentToken(kubeconfig []byte) (string, error) {
	hash, err := caHash(kubeconfig)
	if err != nil {
		return "", err
	}
	if s.pinnedCA != "" && s.pinnedCA != hash {
		return "", fmt.Errorf("%w: the token names a CA with hash %s..., and the server's is %s...: this is not the cluster the token is for (or the server was installed anew); no agent was given a token. Put the server's token (<data-dir>/server/token there) in spec.token, or a secret of your own",
			ErrTokenCA, s.pinnedCA[:16], hash[:16])
	}
	return token.Token{CAHash: hash, User: token.AgentUser, Secret: s.agent}.String(), nil
}

// caHash is the hash that join tokens name (token.CAHash) of the CA
// certificate of a kasa server's admin kubeconfig.
func caHash(kubeconfig []byte) (string, error) {
	cfg, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return "", fmt.Errorf("the server's kubeconfig: %w", err)
	}
	ctx, ok := cfg.Contexts[cfg.CurrentContext]
	if !ok {
		return "", errors.New("the server's kubeconfig has no current context")
	}
	cluster := cfg.Clusters[ctx.Cluster]
	if cluster == nil || len(cluster.CertificateAuthorityData) == 0 {
		return "", errors.New("the server's kubeconfig holds no CA certificate")
	}
	return token.CAHash(cluster.CertificateAuthorityData), nil
}

// checkToken checks the cluster file's token: a server's secret, bare or
// in a full token (K10<ca hash>::server:<secret>). Errors never contain
// the secret.
func checkToken(s string) error {
	if s == "" {
		return nil
	}
	t, err := token.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("spec.token: %w", err)
	case t.Bootstrap:
		return errors.New("spec.token is a bootstrap token (kasa token create), which joins agents only: give the server's token (<data-dir>/server/token on the server) or a secret of your own")
	case t.CAHash != "" && t.User != token.ServerUser:
		return fmt.Errorf("spec.token is a token of user %q, which joins agents only: give the server's token (<data-dir>/server/token on the server) or a secret of your own", t.User)
	}
	return nil
}

// tokenSettings are the settings of a host that kasa up sets itself: a
// host's own would replace the tokens it gives.
var (
	tokenEnv       = []string{"KASA_TOKEN", "KASA_TOKEN_FILE", "KASA_AGENT_TOKEN", "KASA_AGENT_TOKEN_FILE"}
	tokenFileFlags = []string{"--token-file", "--agent-token-file"}
)

// checkTokenSettings refuses a host's environment or flag that sets a
// token, and install flags that kasa would not read (a secret flag without
// its value, or one the host's command does not have).
func checkTokenSettings(h *Host) error {
	for _, k := range tokenEnv {
		if _, ok := h.Environment[k]; ok {
			return fmt.Errorf("environment %s: kasa up gives the hosts their tokens (spec.token); remove it", k)
		}
	}
	rest, secrets, err := splitSecrets(h.Role, h.InstallFlags)
	if err != nil {
		return fmt.Errorf("installFlags: %w", err)
	}
	for _, s := range secrets {
		if slices.Contains(tokenEnv, s.Var) {
			return fmt.Errorf("installFlags %s: kasa up gives the hosts their tokens (spec.token); remove it", s.Flag)
		}
	}
	for _, f := range rest {
		if name, _, _ := strings.Cut(f, "="); slices.Contains(tokenFileFlags, name) {
			return fmt.Errorf("installFlags %s: kasa up gives the hosts their tokens (spec.token); remove it", name)
		}
	}
	return nil
}

// installedDataDir is the data dir of the kasa installed on h: the one its
// install flags give, else kasa's default.
func installedDataDir(h *Host) string {
	dir := settings.DefaultDataDir
	for i, f := range h.InstallFlags {
		switch name, value, ok := strings.Cut(f, "="); {
		case ok && (name == "--data-dir" || name == "-d"):
			dir = value
		case !ok && (f == "--data-dir" || f == "-d") && i+1 < len(h.InstallFlags):
			dir = h.InstallFlags[i+1]
		}
	}
	return dir
}

// installedTokens reads, as root over conn, the server and agent tokens
// that a kasa server installed before keeps in dataDir (an empty token
// for a file that is not there). The secrets come back on the session's
// output, never on a command line.
func installedTokens(ctx context.Context, conn *Conn, dataDir, sudoPassword string) (server, agent token.Token, err error) {
	d := datadir.New(dataDir).Server()
	cmd := "for f in " + shellQuote(d.Token()) + " " + shellQuote(d.AgentToken()) + "; do if [ -f \"$f\" ]; then cat \"$f\"; fi; echo; echo .; done"
	out, stderr, err := conn.Sudo(ctx, cmd, sudoPassword, nil)
	if err != nil {
		return server, agent, fmt.Errorf("reading the installed server's tokens in %s: %w: %s", d.Root, err, lastLines(stderr, 2))
	}
	parts := strings.Split(out, "\n.\n")
	if len(parts) != 3 {
		return server, agent, fmt.Errorf("reading the installed server's tokens in %s: unexpected output", d.Root)
	}
	for i, t := range []*token.Token{&server, &agent} {
		s := strings.TrimSpace(parts[i])
		if s == "" {
			continue
		}
		if *t, err = token.Parse(s); err != nil {
			return server, agent, fmt.Errorf("the installed server's %s: %w", []string{"token", "agent-token"}[i], err)
		}
	}
	return server, agent, nil
}

// adopt makes s the secrets of a server installed before: its token files
// hold the cluster's secrets, which a server keeps whatever it is given,
// so agents must get them. Secrets of the state dir that differ, or that
// it lacks, are replaced there; a spec.token that is not the installed
// server's is refused, as it could never join anything. It returns what
// it changed, for the log (no secret).
func (s *secrets) adopt(c *Cluster, stateDir, dataDir string, server, agent token.Token) ([]string, error) {
	var changed []string
	if server.Secret != "" && !token.Equal(server.Secret, s.server) {
		if c.Spec.Token != "" {
			return nil, fmt.Errorf("spec.token is not the token of the server installed there (%s), which the server keeps: put that token in spec.token, or give the server yours with kasa token rotate --new-token there", datadir.New(dataDir).Server().Token())
		}
		s.server = server.Secret
		changed = append(changed, "server token")
	}
	if agent.Secret != "" && !token.Equal(agent.Secret, s.agent) {
		s.agent = agent.Secret
		changed = append(changed, "agent token")
	}
	if len(changed) == 0 {
		return nil, nil
	}
	file := filepath.Join(stateDir, c.Metadata.Name+".json")
	var st state
	if b, err := os.ReadFile(file); err == nil {
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if c.Spec.Token == "" {
		st.Token = s.server
	}
	st.AgentToken = s.agent
	b, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, err
	}
	return changed, fileutil.WriteFile(file, b, 0o600)
}
