//go:build e2e

package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kasa-io/kasa/pkg/join"
	"github.com/kasa-io/kasa/pkg/pki"
	"github.com/kasa-io/kasa/pkg/token"
	"github.com/kasa-io/kasa/tests/harness"
	"github.com/kasa-io/kasa/tests/harness/hosts"
)

// TestE2EUp: kasa up from this machine (the workstation, with a HOME of
// its own) installs a server reached as root with a key, an agent reached
// as a user who logs in with a password and whose sudo asks for it, and
// an agent reached through the server as a bastion; unknown host keys are
// refused first; the agents join with an agent token pinned to the
// server's CA; a second run changes nothing, also with a known_hosts as
// OpenSSH writes it (one ed25519 line per host) and with the server's full
// token in the cluster file, while a token naming another CA is refused
// before any agent; an agent that an impostor answers at the server's
// address refuses it without sending the secret; kubectl through the
// merged kubeconfig works from here; kasa down leaves the hosts clean and
// the context gone. An install flag with spaces, quotes, % and $ reaches
// kasa on the server and on an agent reached through sudo exactly; no
// secret shows in a host's process list or under /etc/systemd/system but
// in the 0600 environment file.
func TestE2EUp(t *testing.T) {
	cl := newClusterWith(t, hosts.Prefix+"e2e-up", "172.31.246.0/24", func(_, image string) map[string]string {
		return map[string]string{inHostDataDir + "/agent/images/web.tar": image}
	}, "ag1", "ag2", "ag3", "ag4")
	ctx := context.Background()
	srv, ag, ag2, ag3, ag4 := cl.srv, cl.agents["ag1"], cl.agents["ag2"], cl.agents["ag3"], cl.agents["ag4"]
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()

	// A key of the workstation's, authorized for root on srv, ag2, ag3
	// and ag4. On ag, the user deploy has no key: it logs in with its
	// password (KASA_SSH_PASSWORD), which its sudo asks for too.
	authorizeWorkstation(t, home, srv, ag2, ag3, ag4)
	// A key that no host authorizes.
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	otherBlock, _ := ssh.MarshalPrivateKey(otherPriv, "")
	otherKey := filepath.Join(home, "other_key")
	if err := os.WriteFile(otherKey, pem.EncodeToMemory(otherBlock), 0o600); err != nil {
		t.Fatal(err)
	}
	mustExec(t, ag, "sh", "-c", "useradd -m -s /bin/sh deploy && echo 'deploy:sudo-pw-e2e' | chpasswd && "+
		"echo 'deploy ALL=(ALL) ALL' > /etc/sudoers.d/deploy && chmod 0440 /etc/sudoers.d/deploy && "+
		"install -d -o deploy -g deploy -m 0700 /home/deploy/.ssh")

	clusterFile := filepath.Join(home, "cluster.yaml")
	// trickyPath in YAML's single quotes, with kasa up's $$ for a $.
	tricky := "'" + strings.ReplaceAll(strings.ReplaceAll(trickyPath, "'", "''"), "$", "$$") + "'"
	flags := "[--data-dir, " + inHostDataDir + ", --resolv-conf, " + hosts.PodResolvConf + ", --default-local-storage-path, " + tricky + "]"
	host := func(name, role, ssh, flags string) string {
		return "  - {name: " + name + ", role: " + role + ", ssh: " + ssh + ", installFlags: " + flags + "}\n"
	}
	base := host("srv", "server", "{address: "+srv.IP+"}", "[--data-dir, "+inHostDataDir+", --resolv-conf, "+hosts.PodResolvConf+", --disable, \"traefik,metrics-server\", --default-local-storage-path, "+tricky+"]") +
		host("ag1", "agent", "{address: "+ag.IP+", user: deploy}", flags) +
		host("ag2", "agent", "{address: "+ag2.IP+", bastion: "+srv.IP+"}", flags)
	specToken := "" // spec.token of the cluster file, when not empty
	writeCluster := func(hostLines string) {
		t.Helper()
		spec := "apiVersion: kasa.io/v1alpha1\nkind: Cluster\nmetadata:\n  name: e2e-up\nspec:\n"
		if specToken != "" {
			spec += "  token: " + specToken + "\n"
		}
		spec += "  hosts:\n" + hostLines
		if err := os.WriteFile(clusterFile, []byte(spec), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeCluster(base)
	env := append(os.Environ(), "HOME="+home, "SSH_AUTH_SOCK=", "KASA_SSH_PASSWORD=sudo-pw-e2e")
	kasa := func(args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		cmd.Stdin = strings.NewReader("sudo-pw-e2e\n")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	// Unknown host keys: refused, with the fingerprint and the remedy.
	out, err := kasa("up", "-f", clusterFile, "--sudo-password-stdin")
	if err == nil || strings.Count(out, "unknown host key") < 1 || !strings.Contains(out, "--accept-new-host-keys") || !strings.Contains(out, "SHA256:") {
		t.Fatalf("unknown hosts: %v\n%s", err, out)
	}

	started := time.Now()
	out, err = kasa("up", "-f", clusterFile, "--sudo-password-stdin", "--accept-new-host-keys")
	if err != nil {
		t.Fatalf("kasa up: %v\n%s", err, out)
	}
	t.Logf("kasa up, one server and two agents, %s:\n%s", time.Since(started).Round(100*time.Millisecond), out)
	if out, err := exec.Command(bin, "kubectl", "--kubeconfig", filepath.Join(home, ".kube", "config"), "get", "nodes", "--no-headers").CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "srv ") || !strings.Contains(string(out), "ag1 ") || strings.Count(string(out), " Ready ") != 3 {
		t.Errorf("kubectl from the workstation: %v\n%s", err, out)
	}
	// A workload spreads over the three nodes, through the merged
	// kubeconfig from this machine.
	rc, err := clientcmd.BuildConfigFromFlags("", filepath.Join(home, ".kube", "config"))
	if err != nil {
		t.Fatal(err)
	}
	if cl.c, err = kubernetes.NewForConfig(rc); err != nil {
		t.Fatal(err)
	}
	cl.webDeployment(ctx, 3)
	waitFor(t, 2*time.Minute, "a web pod on each node", func() error {
		pods, err := webPods(ctx, cl.c, 3)
		if err != nil {
			return err
		}
		return spread(pods, map[string]int{"srv": 1, "ag1": 1, "ag2": 1})
	})
	if ps := mustExec(t, ag, "ps", "-eo", "args"); strings.Contains(ps, "sudo-pw-e2e") {
		t.Error("the sudo password shows in the agent host's process list")
	}
	// ag1 let deploy in by password; ag2 saw kasa up come from srv, the
	// bastion, not from this machine.
	if log := mustExec(t, ag, "journalctl", "-u", "ssh", "--no-pager", "-o", "cat"); !strings.Contains(log, "Accepted password for deploy") {
		t.Errorf("ag1's sshd did not log a password login for deploy:\n%s", log)
	}
	if log := mustExec(t, ag2, "journalctl", "-u", "ssh", "--no-pager", "-o", "cat"); !strings.Contains(log, "Accepted publickey for root from "+srv.IP+" ") {
		t.Errorf("ag2's sshd did not log a login from the bastion %s:\n%s", srv.IP, log)
	}

	serverToken := checkUpTokens(t, home, srv, ag, ag2)
	agentToken, err := token.Parse(mustExec(t, srv, "cat", inHostDataDir+"/server/agent-token"))
	if err != nil {
		t.Fatal(err)
	}
	// The attacker's look at each host: no secret outside the 0600
	// environment files; the odd flag reached kasa exactly.
	checkNoSecret(t, srv, "/etc/systemd/system/kasa.service.env", serverToken.Secret, agentToken.Secret)
	checkArgs(t, srv, "kasa", "--default-local-storage-path", trickyPath)
	for _, h := range []*hosts.Host{ag, ag2} {
		checkNoSecret(t, h, "/etc/systemd/system/kasa-agent.service.env", agentToken.Secret)
		checkArgs(t, h, "kasa-agent", "--default-local-storage-path", trickyPath)
	}

	// A known_hosts as OpenSSH writes it, one ssh-ed25519 line per host
	// (hashed for ag2), where kasa up recorded other keys: the hosts show
	// the recorded type.
	edKey := func(h *hosts.Host) ssh.PublicKey {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(mustExec(t, h, "cat", "/etc/ssh/ssh_host_ed25519_key.pub")))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	knownHosts := filepath.Join(home, ".ssh", "known_hosts")
	if err := os.WriteFile(knownHosts, []byte(knownhosts.Line([]string{srv.IP}, edKey(srv))+"\n"+knownhosts.Line([]string{ag.IP}, edKey(ag))+"\n"+
		knownhosts.HashHostname(ag2.IP)+" "+string(ssh.MarshalAuthorizedKey(edKey(ag2)))), 0o600); err != nil {
		t.Fatal(err)
	}
	started = time.Now()
	out, err = kasa("up", "-f", clusterFile, "--sudo-password-stdin")
	if err != nil || strings.Count(out, "ok (unchanged)") != 3 {
		t.Errorf("the same again, with ed25519 keys in known_hosts: %v\n%s", err, out)
	}
	t.Logf("kasa up again, nothing to change: %s", time.Since(started).Round(100*time.Millisecond))

	// The server's full token in the cluster file: the same. A token
	// that names another CA: refused once the server's kubeconfig is
	// read, and no agent is touched.
	specToken = serverToken.String()
	writeCluster(base)
	if out, err := kasa("up", "-f", clusterFile, "--sudo-password-stdin"); err != nil || strings.Count(out, "ok (unchanged)") != 3 {
		t.Errorf("the server's full token in the cluster file: %v\n%s", err, out)
	}
	agentEnv := mustExec(t, ag2, "cat", "/etc/systemd/system/kasa-agent.service.env")
	other := serverToken
	other.CAHash = strings.Repeat("ab", 32)
	specToken = other.String()
	writeCluster(base)
	out, err = kasa("up", "-f", clusterFile, "--sudo-password-stdin")
	if err == nil || !strings.Contains(out, "srv: kubeconfig: the server's CA does not match spec.token: the token names a CA with hash abababab") ||
		strings.Count(out, "not installed: the first server failed") != 2 || strings.Contains(out, serverToken.Secret) {
		t.Errorf("a token naming another CA: %v\n%s", err, out)
	}
	if mustExec(t, ag2, "cat", "/etc/systemd/system/kasa-agent.service.env") != agentEnv {
		t.Error("kasa up with a token naming another CA changed an agent")
	}
	specToken = ""
	writeCluster(base)

	// Failures, each named with its host and phase, while the other hosts
	// are checked and left as they are: a wrong sudo password (ag1), a
	// host that does not answer, a key the host refuses, an install whose
	// service cannot start (ag3 with a flag kasa does not know).
	writeCluster(base +
		host("ghost", "agent", "{address: 172.31.246.250}", flags) +
		host("ag4", "agent", "{address: "+ag4.IP+", keyPath: "+otherKey+"}", "[]") +
		host("ag3", "agent", "{address: "+ag3.IP+"}", "[--data-dir, "+inHostDataDir+", --bogus-flag]"))
	cmd := exec.Command(bin, "up", "-f", clusterFile, "--sudo-password-stdin", "--accept-new-host-keys")
	cmd.Env = env
	cmd.Stdin = strings.NewReader("not-the-password\n")
	b, err := cmd.CombinedOutput()
	out = string(b)
	if err == nil {
		t.Errorf("kasa up with failing hosts succeeded:\n%s", out)
	}
	for _, want := range []string{
		"ag1: install: sudo on " + ag.IP + " refused the password",
		"ghost: connect: cannot reach 172.31.246.250:22",
		"ag4: connect: ssh to root@" + ag4.IP + ":22: ssh: handshake failed: ssh: unable to authenticate",
		"ag3: ready: the kasa-agent service keeps exiting: kasa: unknown flag: --bogus-flag",
		"srv              server ok (unchanged)",
		"ag2              agent  ok (unchanged)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("kasa up with failing hosts does not say %q:\n%s", want, out)
		}
	}

	// The fourth host, fixed, joins; the rest is unchanged.
	writeCluster(base + host("ag3", "agent", "{address: "+ag3.IP+"}", flags))
	started = time.Now()
	out, err = kasa("up", "-f", clusterFile, "--sudo-password-stdin")
	if err != nil || strings.Count(out, "ok (unchanged)") != 3 || !strings.Contains(out, "ag3              agent  ok\n") {
		t.Errorf("adding ag3: %v\n%s", err, out)
	}
	t.Logf("kasa up with a fourth host: %s", time.Since(started).Round(100*time.Millisecond))

	// An impostor answers ag4's requests to the server's address (its
	// traffic to srv:6443 goes to a server of this test's, with a CA of
	// its own that signed a certificate for srv's address): the agent
	// that kasa up installs there fetches the CA, refuses it and never
	// sends the secret, which a bare token would have.
	pkiDir := t.TempDir()
	impostorCA, err := pki.LoadOrCreateCA(filepath.Join(pkiDir, "ca.crt"), filepath.Join(pkiDir, "ca.key"), "impostor", pki.ECDSAP256, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	leaf := pki.Leaf{CertFile: filepath.Join(pkiDir, "tls.crt"), KeyFile: filepath.Join(pkiDir, "tls.key"), CommonName: "kasa", Server: true, IPs: []net.IP{net.ParseIP(srv.IP)}}
	if _, err := impostorCA.Ensure(leaf, time.Now()); err != nil {
		t.Fatal(err)
	}
	impostorCert, err := tls.LoadX509KeyPair(leaf.CertFile, leaf.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var asked []string
	impostor := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, r.URL.Path)
		if r.Header.Get("Authorization") != "" {
			asked = append(asked, "a secret")
		}
		if r.URL.Path == join.CACertsPath {
			_, _ = w.Write(impostorCA.CertPEM)
			return
		}
		http.Error(w, `{"message": "who are you"}`, http.StatusUnauthorized)
	}))
	impostor.TLS = &tls.Config{Certificates: []tls.Certificate{impostorCert}, MinVersion: tls.VersionTLS12}
	if impostor.Listener, err = net.Listen("tcp", net.JoinHostPort(cl.nw.Gateway.String(), "0")); err != nil {
		t.Fatal(err)
	}
	impostor.StartTLS()
	defer impostor.Close()
	dnat := []string{"OUTPUT", "-p", "tcp", "-d", srv.IP, "--dport", "6443", "-j", "DNAT", "--to-destination", impostor.Listener.Addr().String()}
	mustExec(t, ag4, append([]string{"iptables", "-t", "nat", "-A"}, dnat...)...)
	withAg4 := base + host("ag3", "agent", "{address: "+ag3.IP+"}", flags) + host("ag4", "agent", "{address: "+ag4.IP+"}", flags)
	writeCluster(withAg4)
	out, err = kasa("up", "-f", clusterFile, "--sudo-password-stdin", "--accept-new-host-keys")
	if err == nil || strings.Count(out, "ok (unchanged)") != 4 || !strings.Contains(out, "ag4: ready: the kasa-agent service keeps exiting: kasa: ") ||
		!strings.Contains(out, "does not match the token") || !strings.Contains(out, "was not sent") {
		t.Errorf("an agent that an impostor answers: %v\n%s", err, out)
	}
	mu.Lock()
	if !slices.Contains(asked, join.CACertsPath) || slices.Contains(asked, join.JoinPath) || slices.Contains(asked, "a secret") {
		t.Errorf("the impostor was asked %v: want %s only, and no secret", asked, join.CACertsPath)
	}
	mu.Unlock()
	mustExec(t, ag4, append([]string{"iptables", "-t", "nat", "-D"}, dnat...)...)

	out, err = kasa("down", "-f", clusterFile, "--sudo-password-stdin")
	if err != nil {
		t.Fatalf("kasa down: %v\n%s", err, out)
	}
	for _, h := range []*hosts.Host{ag, ag2, ag3, ag4, srv} {
		checkHostClean(t, h)
	}
	if kc, err := os.ReadFile(filepath.Join(home, ".kube", "config")); err != nil || strings.Contains(string(kc), "e2e-up") {
		t.Errorf("the context is still in the kubeconfig: %v\n%s", err, kc)
	}
}

// authorizeWorkstation makes the workstation's key, ~/.ssh/id_ed25519
// in home, and authorizes it for root on hs.
func authorizeWorkstation(t *testing.T, home string, hs ...*hosts.Host) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(home, ".ssh", "id_ed25519")
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, _ := ssh.NewSignerFromKey(priv)
	authorized := ssh.MarshalAuthorizedKey(signer.PublicKey())
	for _, h := range hs {
		if err := h.WriteFile(context.Background(), "/root/.ssh/authorized_keys", authorized, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// checkUpTokens checks the tokens kasa up gave: the agents' environment
// files hold an agent token (not the server's) pinned to the server's CA,
// the one the server keeps; the server has that agent secret; the local
// state file is 0600; no agent joined on trust. It returns the server's
// token. No secret is printed.
func checkUpTokens(t *testing.T, home string, srv *hosts.Host, agents ...*hosts.Host) token.Token {
	t.Helper()
	ctx := context.Background()
	serverToken, err := token.Parse(mustExec(t, srv, "cat", inHostDataDir+"/server/token"))
	if err != nil || serverToken.CAHash == "" {
		t.Fatalf("the server's token: %v", err)
	}
	agentToken, err := token.Parse(mustExec(t, srv, "cat", inHostDataDir+"/server/agent-token"))
	if err != nil || agentToken.CAHash != serverToken.CAHash || agentToken.User != token.AgentUser || agentToken.Secret == serverToken.Secret {
		t.Errorf("the server's agent token: user %q, CA %s, its own secret %v: %v", agentToken.User, agentToken.CAHash, agentToken.Secret != serverToken.Secret, err)
	}
	if env := mustExec(t, srv, "cat", "/etc/systemd/system/kasa.service.env"); !strings.Contains(env, "KASA_AGENT_TOKEN=") {
		t.Error("the server's environment file has no KASA_AGENT_TOKEN")
	}
	for _, h := range agents {
		env := mustExec(t, h, "cat", "/etc/systemd/system/kasa-agent.service.env")
		line := lineWith(env, "KASA_TOKEN=")
		value := strings.Trim(strings.TrimPrefix(line, "KASA_TOKEN="), `"`)
		got, err := token.Parse(value)
		if err != nil || !strings.HasPrefix(value, "K10"+serverToken.CAHash+"::") || got.User != token.AgentUser ||
			got.Secret != agentToken.Secret || got.Secret == serverToken.Secret {
			t.Errorf("host %s: KASA_TOKEN is not the agent token pinned to the server's CA %s: user %q, CA %q, the agent secret %v, the server's %v (%v)",
				h.Name, serverToken.CAHash, got.User, got.CAHash, got.Secret == agentToken.Secret, got.Secret == serverToken.Secret, err)
		}
		if j := h.Journal(ctx, "kasa-agent", 5000); strings.Contains(j, "taken on trust") {
			t.Errorf("host %s: the agent joined without checking the CA", h.Name)
		}
	}
	if fi, err := os.Stat(filepath.Join(home, ".kasa", "up", "e2e-up.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("kasa up's state file: %v", err)
	}
	return serverToken
}
