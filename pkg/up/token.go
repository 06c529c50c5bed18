package up

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/kasa-io/kasa/pkg/fileutil"
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

// caHash is the hex sha256 of the CA certificate of a kasa server's admin
// kubeconfig, as join tokens name it.
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
	sum := sha256.Sum256(cluster.CertificateAuthorityData)
	return hex.EncodeToString(sum[:]), nil
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
	tokenEnv   = []string{"KASA_TOKEN", "KASA_TOKEN_FILE", "KASA_AGENT_TOKEN", "KASA_AGENT_TOKEN_FILE"}
	tokenFlags = []string{"--token", "--token-file", "--agent-token", "--agent-token-file", "-t"}
)

// checkTokenSettings refuses a host's environment or flag that sets a
// token.
func checkTokenSettings(h *Host) error {
	for _, k := range tokenEnv {
		if _, ok := h.Environment[k]; ok {
			return fmt.Errorf("environment %s: kasa up gives the hosts their tokens (spec.token); remove it", k)
		}
	}
	for _, f := range h.InstallFlags {
		name, _, _ := strings.Cut(f, "=")
		for _, t := range tokenFlags {
			if name == t || (t == "-t" && strings.HasPrefix(name, "-t")) {
				return fmt.Errorf("installFlags %s: kasa up gives the hosts their tokens (spec.token); remove it", t)
			}
		}
	}
	return nil
}
