//go:build e2e

package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kasa-io/kasa/tests/harness"
	"github.com/kasa-io/kasa/tests/harness/hosts"
)

// TestE2EUp: kasa up from this machine (the workstation, with a HOME of
// its own) installs a server reached as root with a key, an agent reached
// as a user who logs in with a password and whose sudo asks for it, and
// an agent reached through the server as a bastion; unknown host keys are
// refused first; a second run changes nothing; kubectl through
// the merged kubeconfig works from here; kasa down leaves the hosts clean
// and the context gone.
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
	for _, h := range []*hosts.Host{srv, ag2, ag3, ag4} {
		if err := h.WriteFile(ctx, "/root/.ssh/authorized_keys", authorized, 0o600); err != nil {
			t.Fatal(err)
		}
	}
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
	flags := "[--data-dir, " + inHostDataDir + ", --resolv-conf, " + hosts.PodResolvConf + "]"
	host := func(name, role, ssh, flags string) string {
		return "  - {name: " + name + ", role: " + role + ", ssh: " + ssh + ", installFlags: " + flags + "}\n"
	}
	base := host("srv", "server", "{address: "+srv.IP+"}", "[--data-dir, "+inHostDataDir+", --resolv-conf, "+hosts.PodResolvConf+", --disable, \"traefik,metrics-server\"]") +
		host("ag1", "agent", "{address: "+ag.IP+", user: deploy}", flags) +
		host("ag2", "agent", "{address: "+ag2.IP+", bastion: "+srv.IP+"}", flags)
	writeCluster := func(hostLines string) {
		t.Helper()
		spec := "apiVersion: kasa.io/v1alpha1\nkind: Cluster\nmetadata:\n  name: e2e-up\nspec:\n  hosts:\n" + hostLines
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

	started = time.Now()
	out, err = kasa("up", "-f", clusterFile, "--sudo-password-stdin")
	if err != nil || strings.Count(out, "ok (unchanged)") != 3 {
		t.Errorf("the same again: %v\n%s", err, out)
	}
	t.Logf("kasa up again, nothing to change: %s", time.Since(started).Round(100*time.Millisecond))

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

	out, err = kasa("down", "-f", clusterFile, "--sudo-password-stdin")
	if err != nil {
		t.Fatalf("kasa down: %v\n%s", err, out)
	}
	for _, h := range []*hosts.Host{ag, ag2, ag3, srv} {
		checkHostClean(t, h)
	}
	if kc, err := os.ReadFile(filepath.Join(home, ".kube", "config")); err != nil || strings.Contains(string(kc), "e2e-up") {
		t.Errorf("the context is still in the kubeconfig: %v\n%s", err, kc)
	}
}
