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

	"github.com/kasa-io/kasa/tests/harness"
	"github.com/kasa-io/kasa/tests/harness/hosts"
)

// TestE2EUp: kasa up from this machine (the workstation, with a HOME of
// its own) installs a server reached as root and an agent reached as a
// user whose sudo asks for a password, over SSH with keys; unknown host
// keys are refused first; a second run changes nothing; kubectl through
// the merged kubeconfig works from here; kasa down leaves the hosts clean
// and the context gone.
func TestE2EUp(t *testing.T) {
	cl := newClusterWith(t, hosts.Prefix+"e2e-up", "172.31.246.0/24", func(_, image string) map[string]string {
		return map[string]string{inHostDataDir + "/agent/images/web.tar": image}
	}, "ag")
	ctx := context.Background()
	srv, ag := cl.srv, cl.agents["ag"]
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()

	// A key of the workstation's, authorized for root on srv and for
	// deploy on ag, whose sudo asks for deploy's password.
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
	if err := srv.WriteFile(ctx, "/root/.ssh/authorized_keys", authorized, 0o600); err != nil {
		t.Fatal(err)
	}
	mustExec(t, ag, "sh", "-c", "useradd -m -s /bin/sh deploy && echo 'deploy:sudo-pw-e2e' | chpasswd && "+
		"echo 'deploy ALL=(ALL) ALL' > /etc/sudoers.d/deploy && chmod 0440 /etc/sudoers.d/deploy && "+
		"install -d -o deploy -g deploy -m 0700 /home/deploy/.ssh")
	if err := ag.WriteFile(ctx, "/home/deploy/.ssh/authorized_keys", authorized, 0o600); err != nil {
		t.Fatal(err)
	}
	mustExec(t, ag, "chown", "deploy:deploy", "/home/deploy/.ssh/authorized_keys")

	clusterFile := filepath.Join(home, "cluster.yaml")
	spec := `apiVersion: kasa.io/v1alpha1
kind: Cluster
metadata:
  name: e2e-up
spec:
  hosts:
  - name: srv
    role: server
    ssh: {address: ` + srv.IP + `}
    installFlags: [--data-dir, ` + inHostDataDir + `, --resolv-conf, ` + hosts.PodResolvConf + `, --disable, "traefik,metrics-server"]
  - name: ag
    role: agent
    ssh: {address: ` + ag.IP + `, user: deploy}
    installFlags: [--data-dir, ` + inHostDataDir + `, --resolv-conf, ` + hosts.PodResolvConf + `]
`
	if err := os.WriteFile(clusterFile, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	kasa := func(args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "HOME="+home, "SSH_AUTH_SOCK=")
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
	t.Logf("kasa up, one server and one agent, %s:\n%s", time.Since(started).Round(100*time.Millisecond), out)
	if out, err := exec.Command(bin, "kubectl", "--kubeconfig", filepath.Join(home, ".kube", "config"), "get", "nodes", "--no-headers").CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "srv ") || !strings.Contains(string(out), "ag ") || strings.Count(string(out), " Ready ") != 2 {
		t.Errorf("kubectl from the workstation: %v\n%s", err, out)
	}
	if ps := mustExec(t, ag, "ps", "-eo", "args"); strings.Contains(ps, "sudo-pw-e2e") {
		t.Error("the sudo password shows in the agent host's process list")
	}

	started = time.Now()
	out, err = kasa("up", "-f", clusterFile, "--sudo-password-stdin")
	if err != nil || strings.Count(out, "ok (unchanged)") != 2 {
		t.Errorf("the same again: %v\n%s", err, out)
	}
	t.Logf("kasa up again, nothing to change: %s", time.Since(started).Round(100*time.Millisecond))

	out, err = kasa("down", "-f", clusterFile, "--sudo-password-stdin")
	if err != nil {
		t.Fatalf("kasa down: %v\n%s", err, out)
	}
	checkHostClean(t, ag)
	checkHostClean(t, srv)
	if kc, err := os.ReadFile(filepath.Join(home, ".kube", "config")); err != nil || strings.Contains(string(kc), "e2e-up") {
		t.Errorf("the context is still in the kubeconfig: %v\n%s", err, kc)
	}
}
