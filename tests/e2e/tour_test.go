//go:build e2e

// End-to-end tests: the real kasa binary, as root, on this machine.
package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	// Where the tour links kubectl.
	tourKubectl = "/usr/local/bin/kubectl"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the end-to-end suites run as root (sudo make e2e)")
	}
}

// tourCommands reads the shell block under "## A short tour" in README.md:
// each command as written, its comment taken off.
func tourCommands(t *testing.T) []string {
	t.Helper()
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(strings.TrimSpace(string(root)), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cmds []string
	in, inTour := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			inTour = line == "## A short tour"
		case inTour && strings.HasPrefix(line, "```"):
			if in {
				return cmds
			}
			in = true
		case in:
			if i := strings.Index(line, "  #"); i >= 0 {
				line = line[:i]
			}
			if line = strings.TrimSpace(line); line != "" {
				cmds = append(cmds, line)
			}
		}
	}
	t.Fatal("README.md has no shell block under \"## A short tour\"")
	return nil
}

// A tour step: a command of the README's tour, recognised by a pattern, and
// what its output must show. A step is retried until check passes or its
// time is up, as a person would run the command again while the cluster
// comes up; once means it must pass the first time.
type tourStep struct {
	match   *regexp.Regexp
	timeout time.Duration
	once    bool
	check   func(out string) error
	after   func(t *testing.T)
}

func contains(subs ...string) func(string) error {
	return func(out string) error {
		for _, s := range subs {
			if !strings.Contains(out, s) {
				return fmt.Errorf("no %q in the output", s)
			}
		}
		return nil
	}
}

// TestE2EReadmeTour runs the README's short tour as a new user would, line
// by line as written, on a machine where kasa is not installed: every
// default (data in /var/lib/kasa, the kubeconfig in /etc/kasa/kasa.yaml, the
// API on 6443), a node with its add-ons, an image archive dropped into a
// node that has never had one, and killall. Where sudo is not installed
// (root on a fresh machine) it drops `sudo`, as the README tells root to. A
// command in the tour that this test does not know fails it, so the README
// and the test cannot drift apart. It leaves the machine as it found it.
func TestE2EReadmeTour(t *testing.T) {
	requireRoot(t)
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{defaultDataDir, defaultKubeconfig, "/etc/kasa/config.yaml", tourKubectl} {
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

	// The tour runs in a folder with ./bin/kasa and app.tar, as in a
	// checkout where the user has built kasa and has an image archive.
	work := t.TempDir()
	if err := os.Mkdir(filepath.Join(work, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, filepath.Join(work, "bin", "kasa")); err != nil {
		t.Fatal(err)
	}
	if err := harness.BuildTestImage(filepath.Join(work, "app.tar")); err != nil {
		t.Fatal(err)
	}
	_, noSudo := exec.LookPath("sudo")
	env := append(harness.HermeticEnv(), "PWD="+work)

	var server *exec.Cmd
	exited := make(chan struct{}) // closed when the server has exited
	serverLog := filepath.Join(work, "server.log")
	t.Cleanup(func() {
		if out, err := exec.Command(bin, "killall").CombinedOutput(); err != nil {
			t.Errorf("kasa killall: %v\n%s", err, out)
		}
		if server != nil {
			select {
			case <-exited:
			case <-time.After(20 * time.Second):
				_ = server.Process.Kill()
				t.Errorf("kasa server outlived kasa killall by 20 s")
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(serverLog)
			t.Logf("server log (tail):\n%s", tail(string(b), 40))
		}
		os.RemoveAll(defaultDataDir)
		os.Remove(defaultKubeconfig)
		if !etcKasaExisted {
			os.Remove("/etc/kasa")
		}
		os.Remove(tourKubectl)
	})

	var c kubernetes.Interface
	steps := []tourStep{{
		match: regexp.MustCompile(`^(sudo )?\./bin/kasa server &$`),
	}, {
		match: regexp.MustCompile(`^(sudo )?\./bin/kasa kubectl get nodes$`), timeout: 2 * time.Minute,
		check: func(out string) error {
			if !regexp.MustCompile(`(?m)^\S+\s+Ready\s`).MatchString(out) {
				return errors.New("no Ready node")
			}
			return nil
		},
		after: func(t *testing.T) { c = checkDefaults(t, bin) },
	}, {
		match: regexp.MustCompile(`^(sudo )?\./bin/kasa kubectl -n kube-system get pods$`), timeout: 3 * time.Minute,
		check: func(out string) error {
			for _, app := range []string{"coredns", "traefik", "metrics-server"} {
				if !regexp.MustCompile(`(?m)^` + app + `-\S+\s+1/1\s+Running\s`).MatchString(out) {
					return fmt.Errorf("%s is not 1/1 Running", app)
				}
			}
			return nil
		},
	}, {
		match: regexp.MustCompile(`^(sudo )?\./bin/kasa kubectl top pods -A$`), timeout: 3 * time.Minute,
		check: func(out string) error {
			if !regexp.MustCompile(`(?m)^kube-system\s+coredns-\S+\s+\d+m\s+\d+Mi`).MatchString(out) {
				return errors.New("no figures for coredns")
			}
			return nil
		},
	}, {
		match: regexp.MustCompile(`^curl http://<node address>/$`), timeout: time.Minute,
		check: contains("404 page not found"),
	}, {
		match: regexp.MustCompile(`^(sudo )?cp app\.tar /var/lib/kasa/agent/images/$`), once: true,
		after: func(t *testing.T) {
			waitFor(t, 30*time.Second, "app.tar imported", func() error {
				out, err := run(bin, "ctr", "images", "ls", "-q")
				if err != nil {
					return fmt.Errorf("%w: %s", err, out)
				}
				return contains(harness.TestImage)(out)
			})
		},
	}, {
		match: regexp.MustCompile(`^(sudo )?\./bin/kasa crictl ps$`), once: true,
		check: contains("coredns", "traefik", "metrics-server", "Running"),
	}, {
		match: regexp.MustCompile(`^(sudo )?cat /var/lib/kasa/server/token$`), once: true,
		check: func(out string) error {
			if !regexp.MustCompile(`^K10[0-9a-f]{64}::server:\S{16,}\n?$`).MatchString(out) {
				return errors.New("not a K10<ca hash>::server:<secret> token")
			}
			return nil
		},
	}, {
		match: regexp.MustCompile(`^ln -s "\$PWD/bin/kasa" /usr/local/bin/kubectl$`), once: true,
		after: func(t *testing.T) {
			out, err := run(tourKubectl, "version", "--client")
			if err != nil || !strings.Contains(out, "Client Version: v1.37") {
				t.Fatalf("%s version --client: %v\n%s", tourKubectl, err, out)
			}
		},
	}, {
		match: regexp.MustCompile(`^(sudo )?\./bin/kasa killall$`), once: true,
		after: func(t *testing.T) {
			select {
			case <-exited:
			case <-time.After(20 * time.Second):
				t.Fatal("kasa server still runs 20 s after kasa killall")
			}
			if left := processesUnder(defaultDataDir); len(left) > 0 {
				t.Errorf("processes left after killall: %v", left)
			}
			for _, keep := range []string{"server/db/state.db", "server/token"} {
				if !exists(filepath.Join(defaultDataDir, keep)) {
					t.Errorf("killall removed %s from the data dir", keep)
				}
			}
		},
	}}

	cmds := tourCommands(t)
	used := make([]bool, len(steps))
	for _, line := range cmds {
		i := -1
		for j, s := range steps {
			if s.match.MatchString(line) {
				i = j
				break
			}
		}
		if i < 0 {
			t.Fatalf("the README's tour has a command that this test does not know: %q", line)
		}
		used[i] = true
		st := steps[i]
		cmdline := line
		if noSudo != nil {
			cmdline = strings.ReplaceAll(cmdline, "sudo ", "")
		}
		if strings.Contains(cmdline, "<node address>") {
			cmdline = strings.ReplaceAll(cmdline, "<node address>", nodeIP(t, c))
		}
		t.Logf("$ %s", cmdline)
		if background, ok := strings.CutSuffix(cmdline, " &"); ok {
			logf, err := os.Create(serverLog)
			if err != nil {
				t.Fatal(err)
			}
			server = exec.Command("/bin/sh", "-c", "exec "+background)
			server.Dir, server.Env = work, env
			server.Stdout, server.Stderr = logf, logf
			if err := server.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { _ = server.Wait(); logf.Close(); close(exited) }()
			continue
		}
		runStep := func() error {
			cmd := exec.Command("/bin/sh", "-c", cmdline)
			cmd.Dir, cmd.Env = work, env
			b, err := cmd.CombinedOutput()
			if err != nil {
				return fmt.Errorf("%w\n%s", err, tail(string(b), 20))
			}
			if st.check != nil {
				if err := st.check(string(b)); err != nil {
					return fmt.Errorf("%w:\n%s", err, tail(string(b), 20))
				}
			}
			return nil
		}
		if st.once {
			if err := runStep(); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
		} else {
			waitFor(t, st.timeout, line, runStep)
		}
		if st.after != nil {
			st.after(t)
		}
	}
	for i, u := range used {
		if !u {
			t.Errorf("the README's tour no longer has a command matching %s", steps[i].match)
		}
	}
}

// checkDefaults checks what the defaults give, once the tour's server is
// up: the admin kubeconfig and token at 0600, `kasa kubectl` with no
// KUBECONFIG, and any kubectl given /etc/kasa/kasa.yaml.
func checkDefaults(t *testing.T, bin string) kubernetes.Interface {
	t.Helper()
	out, err := run(bin, "kubectl", "get", "--raw", "/readyz")
	if err != nil || strings.TrimSpace(out) != "ok" {
		t.Fatalf("kasa kubectl get --raw /readyz: %v %s", err, out)
	}
	info, err := os.Stat(defaultKubeconfig)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, %v; want mode 0600", defaultKubeconfig, err, info)
	}
	if info, err := os.Stat(filepath.Join(defaultDataDir, "server/token")); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("server token: %v %v", err, info)
	}
	// The machine's own (older) kubectl when it has one, else a link.
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
	rc, err := clientcmd.BuildConfigFromFlags("", defaultKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return c
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
