//go:build e2e

// End-to-end tests: the real kasa binary, as root, on this machine.
package e2e

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kasa-io/kasa/tests/harness"
)

const (
	defaultDataDir    = "/var/lib/kasa"
	defaultKubeconfig = "/etc/kasa/kasa.yaml"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the end-to-end suites run as root (sudo make e2e)")
	}
}

// TestE2EServerWithDefaults runs `kasa server` exactly as the README says,
// with every default: data in /var/lib/kasa, the kubeconfig in
// /etc/kasa/kasa.yaml, the API on 6443, a node with CoreDNS. It needs a
// machine where kasa is not installed, and leaves it that way.
func TestE2EServerWithDefaults(t *testing.T) {
	requireRoot(t)
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{defaultDataDir, defaultKubeconfig, "/etc/kasa/config.yaml"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s exists: this suite needs a machine without a kasa installation (remove it, or run the suite elsewhere)", p)
		}
	}
	if l, err := net.Listen("tcp", ":6443"); err != nil {
		t.Fatalf("port 6443 is taken: %v", err)
	} else {
		l.Close()
	}
	etcKasaExisted := exists("/etc/kasa")
	t.Cleanup(func() {
		if out, err := exec.Command(bin, "killall").CombinedOutput(); err != nil {
			t.Errorf("kasa killall: %v\n%s", err, out)
		}
		os.RemoveAll(defaultDataDir)
		os.Remove(defaultKubeconfig)
		if !etcKasaExisted {
			os.Remove("/etc/kasa")
		}
	})

	log, err := os.CreateTemp("", "kasa-e2e-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(log.Name())
	cmd := exec.Command(bin, "server")
	cmd.Env = harness.HermeticEnv()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var exitErr error
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case exitErr = <-exited:
			if exitErr != nil {
				t.Errorf("kasa server stopped with %v", exitErr)
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			exitErr = <-exited
			t.Errorf("kasa server did not stop within 20 s of SIGINT (%v)", exitErr)
		}
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("server log (tail):\n%s", tail(string(b), 40))
		}
	}()

	// kasa kubectl, with no KUBECONFIG, finds the admin kubeconfig itself.
	deadline := time.Now().Add(90 * time.Second)
	var out string
	for {
		out, err = run(bin, "kubectl", "get", "--raw", "/readyz")
		if err == nil && strings.TrimSpace(out) == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kasa kubectl get --raw /readyz never said ok; last: %v %s", err, out)
		}
		select {
		case err := <-exited:
			t.Fatalf("kasa server exited: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}

	info, err := os.Stat(defaultKubeconfig)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, mode %v; want 0600", defaultKubeconfig, err, info.Mode().Perm())
	}
	if info, err := os.Stat(filepath.Join(defaultDataDir, "server/token")); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("server token: %v %v", err, info)
	}

	// Any kubectl given the kubeconfig lists the default namespaces: the
	// machine's own (older) kubectl when it has one, else a kubectl link.
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		kubectl = filepath.Join(t.TempDir(), "kubectl")
		if err := os.Symlink(bin, kubectl); err != nil {
			t.Fatal(err)
		}
	}
	out, err = run(kubectl, "--kubeconfig", defaultKubeconfig, "get", "namespaces", "-o", "name")
	if err != nil {
		t.Fatalf("%s get namespaces: %v\n%s", kubectl, err, out)
	}
	for _, ns := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		if !strings.Contains(out, "namespace/"+ns+"\n") {
			t.Errorf("%s missing from:\n%s", ns, out)
		}
	}

	// The node and CoreDNS come up, from nothing but the binary.
	rc, err := clientcmd.BuildConfigFromFlags("", defaultKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	waitFor(t, 90*time.Second, "node Ready", func() error { return nodeReady(ctx, c) })
	waitFor(t, 120*time.Second, "CoreDNS available", func() error { return deploymentAvailable(ctx, c, "kube-system", "coredns") })
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func run(bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = harness.HermeticEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
