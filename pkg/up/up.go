package up

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kasa-io/kasa/install"
)

// Options are what Up needs besides the cluster file.
type Options struct {
	// Binary is the kasa binary uploaded to the hosts.
	Binary string
	Auth   Auth
	// SudoPassword is given to sudo on hosts reached as another user than root.
	SudoPassword string
	// Concurrency bounds the agents installed at once.
	Concurrency int
	// Kubeconfig is the file the cluster's context is merged into.
	Kubeconfig string
	// NoSwitchContext keeps the kubeconfig's current context.
	NoSwitchContext bool
	// StateDir keeps the generated secrets of each cluster (~/.kasa/up).
	StateDir string
	// ReadyTimeout bounds the wait for each node; 5 min when zero.
	ReadyTimeout time.Duration
	Out          io.Writer
}

// Result is what happened on one host.
type Result struct {
	Host    string
	Role    string
	Changed bool
	Err     error
	Took    time.Duration
}

// remoteDir is where kasa up puts its files in a user's home on a host.
const remoteDir = ".kasa-up"

// Up installs the cluster: the server first, then the agents, at most
// o.Concurrency at once; a host that fails does not stop the others. It
// merges the cluster's context into o.Kubeconfig and returns one result
// per host, in the file's order.
func Up(ctx context.Context, c *Cluster, o Options) ([]Result, error) {
	sec, err := clusterSecrets(c, o.StateDir)
	if err != nil {
		return nil, err
	}
	u := &run{c: c, o: o, secrets: sec, artifacts: &artifacts{binary: o.Binary, stateDir: o.StateDir}}
	srv := c.Server()
	results := make([]Result, len(c.Spec.Hosts))
	index := func(h *Host) int {
		return slices.IndexFunc(c.Spec.Hosts, func(x Host) bool { return x.Name == h.Name })
	}
	serverURL := c.registrationURL()

	serverEnv := map[string]string{"KASA_TOKEN": sec.server, "KASA_AGENT_TOKEN": sec.agent}
	if c.Spec.DatastoreEndpoint != "" {
		// A DSN may hold a password: the environment file, not the unit.
		serverEnv["KASA_DATASTORE_ENDPOINT"] = c.Spec.DatastoreEndpoint
	}
	// A server installed before keeps its secrets whatever it is given:
	// take them from it rather than give it others.
	adopt := func(ctx context.Context, conn *Conn) error {
		dataDir := installedDataDir(srv)
		server, agent, err := installedTokens(ctx, conn, dataDir, o.SudoPassword)
		if err != nil {
			return err
		}
		changed, err := u.secrets.adopt(c, o.StateDir, dataDir, server, agent)
		if err != nil {
			return err
		}
		if len(changed) > 0 {
			u.logf(srv.Name, "token", "the installed server's %s (in %s/server) kept in %s", strings.Join(changed, " and "), dataDir, o.StateDir)
		}
		serverEnv["KASA_TOKEN"], serverEnv["KASA_AGENT_TOKEN"] = u.secrets.server, u.secrets.agent
		return nil
	}
	r := u.host(ctx, srv, serverArgs(c, srv), serverEnv, adopt, func(ctx context.Context, conn *Conn) error {
		return u.fetchKubeconfig(ctx, conn, srv, serverURL)
	})
	results[index(srv)] = r
	if r.Err != nil {
		for i, h := range c.Spec.Hosts {
			if h.Name != srv.Name {
				results[i] = Result{Host: h.Name, Role: h.Role, Err: errors.New("not installed: the first server failed")}
			}
		}
		return results, nil
	}
	// The other servers take the cluster's CAs and settings from the
	// datastore with its server token, one after the other.
	for _, h := range c.Servers()[1:] {
		r := u.host(ctx, h, serverArgs(c, h), serverEnv, nil, nil)
		results[index(h)] = r
		if r.Err != nil {
			for i, x := range c.Spec.Hosts {
				if results[i].Host == "" {
					results[i] = Result{Host: x.Name, Role: x.Role, Err: fmt.Errorf("not installed: server %s failed", h.Name)}
				}
			}
			return results, nil
		}
	}

	sem := make(chan struct{}, max(1, o.Concurrency))
	var wg sync.WaitGroup
	for i := range c.Spec.Hosts {
		h := &c.Spec.Hosts[i]
		if h.Role != RoleAgent {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i] = u.host(ctx, h, append([]string{"agent"}, h.InstallFlags...),
				map[string]string{"KASA_URL": serverURL, "KASA_TOKEN": u.agentToken}, nil, nil)
		}()
	}
	wg.Wait()
	return results, nil
}

// run is one kasa up.
type run struct {
	c       *Cluster
	o       Options
	secrets secrets
	// agentToken joins the agents, pinned to the server's CA once its
	// kubeconfig is read.
	agentToken string
	// artifacts is the file each host's architecture takes.
	artifacts *artifacts
	mu        sync.Mutex
	// client reaches the cluster from here, once the server's kubeconfig
	// is merged.
	client kubernetes.Interface
}

// fetchKubeconfig reads the server's admin kubeconfig, pins the agents'
// token to its CA, merges it into o.Kubeconfig under the cluster's name
// with the server's address, and makes the client the agents' readiness
// is checked with.
func (u *run) fetchKubeconfig(ctx context.Context, conn *Conn, srv *Host, serverURL string) error {
	data, stderr, err := conn.Sudo(ctx, "cat /etc/kasa/kasa.yaml", u.o.SudoPassword, nil)
	if err != nil {
		return fmt.Errorf("%w: %s", err, stderr)
	}
	if u.agentToken, err = u.secrets.agentToken([]byte(data)); err != nil {
		return err
	}
	name := u.c.Metadata.Name
	if err := MergeKubeconfig(u.o.Kubeconfig, []byte(data), serverURL, name, !u.o.NoSwitchContext); err != nil {
		return err
	}
	u.logf(srv.Name, "kubeconfig", "context %s in %s", name, u.o.Kubeconfig)
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: u.o.Kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: name}).ClientConfig()
	if err != nil {
		return err
	}
	rc.Timeout = 10 * time.Second
	u.client, err = kubernetes.NewForConfig(rc)
	return err
}

// waitReady waits until node name is Ready: asked from here once the
// kubeconfig is merged, else on the host (the server) itself.
func (u *run) waitReady(ctx context.Context, conn *Conn, name, unit, restarts string) error {
	timeout := u.o.ReadyTimeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	deadline := time.Now().Add(timeout)
	last := "not yet asked"
	for time.Now().Before(deadline) {
		status := ""
		if u.client != nil {
			n, err := u.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				last = err.Error()
			} else {
				for _, c := range n.Status.Conditions {
					if c.Type == corev1.NodeReady {
						status = string(c.Status)
					}
				}
			}
		} else {
			out, stderr, err := conn.Sudo(ctx, "/usr/local/bin/kasa kubectl get node "+shellQuote(name)+
				` -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}'`, u.o.SudoPassword, nil)
			status = strings.TrimSpace(out)
			if err != nil {
				last = strings.TrimSpace(lastLines(stderr, 1))
			}
		}
		if status == "True" {
			return nil
		}
		// A service that exits is restarted by systemd: say why at once
		// rather than wait out the timeout.
		if out, _, err := conn.Run(ctx, "systemctl show -p NRestarts --value "+unit, nil); err == nil && strings.TrimSpace(out) != restarts {
			journal, _, _ := conn.Sudo(ctx, "journalctl -u "+unit+" --no-pager -n 50 -o cat | grep '^kasa: ' | tail -n 1", u.o.SudoPassword, nil)
			return fmt.Errorf("the %s service keeps exiting: %s", unit, strings.TrimSpace(journal))
		}
		if status != "" {
			last = "Ready is " + status
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return fmt.Errorf("node %s not Ready within %s (last: %s)", name, timeout, last)
}

func (u *run) logf(host, phase, format string, args ...any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.o.Out != nil {
		fmt.Fprintf(u.o.Out, "%-16s %-10s %s\n", host, phase, fmt.Sprintf(format, args...))
	}
}

// host installs kasa on h: connect, upload, install, wait until its node
// is Ready. Errors name the phase and carry the remote command's stderr.
// first, when not nil, runs once connected, before env is used (the
// installed server's tokens are read so); then, when not nil, runs last on
// the same connection (the server's kubeconfig is read so).
func (u *run) host(ctx context.Context, h *Host, args []string, env map[string]string, first, then func(context.Context, *Conn) error) (res Result) {
	start := time.Now()
	res = Result{Host: h.Name, Role: h.Role}
	defer func() { res.Took = time.Since(start) }()
	fail := func(phase string, err error) Result {
		res.Err = fmt.Errorf("%s: %s: %w", h.Name, phase, err)
		u.logf(h.Name, phase, "failed: %v", err)
		return res
	}
	u.logf(h.Name, "connect", "%s@%s:%d", h.SSH.User, h.SSH.Address, h.SSH.Port)
	conn, err := Dial(ctx, h.target(), u.o.Auth)
	if err != nil {
		return fail("connect", err)
	}
	defer conn.Close()

	out, stderr, err := conn.Run(ctx, "printf '%s\\n' \"$HOME\"; uname -m", nil)
	if err != nil {
		return fail("connect", fmt.Errorf("%w: %s", err, stderr))
	}
	home, machine, _ := strings.Cut(out, "\n")
	if home == "" {
		return fail("connect", errors.New("the user has no home directory"))
	}
	arch, err := hostArch(machine)
	if err != nil {
		return fail("connect", err)
	}
	binary, binSum, err := u.artifacts.For(arch)
	if err != nil {
		return fail("upload", err)
	}
	if first != nil {
		if err := first(ctx, conn); err != nil {
			return fail("token", err)
		}
	}
	dir := home + "/" + remoteDir
	if _, stderr, err := conn.Run(ctx, "mkdir -p -m 0700 "+shellQuote(dir), nil); err != nil {
		return fail("upload", fmt.Errorf("%w: %s", err, stderr))
	}
	copied, err := conn.Upload(ctx, binary, dir+"/kasa", 0o755, binSum)
	if err != nil {
		return fail("upload", err)
	}
	if copied {
		u.logf(h.Name, "upload", "%s uploaded and checked (%s, sha256 %s...)", filepath.Base(binary), arch, binSum[:12])
		res.Changed = true
	}
	script, err := writeTemp(install.Script)
	if err != nil {
		return fail("upload", err)
	}
	defer os.Remove(script)
	sum := sha256.Sum256(install.Script)
	if _, err := conn.Upload(ctx, script, dir+"/install.sh", 0o755, hex.EncodeToString(sum[:])); err != nil {
		return fail("upload", err)
	}

	// The settings, secrets among them, go in a file only the user can
	// read, never on a command line.
	settings, shown, err := installSettings(h, args, env, dir+"/kasa")
	if err != nil {
		return fail("install", err)
	}
	if _, stderr, err := conn.Run(ctx, "umask 077 && cat > "+shellQuote(dir+"/env"), strings.NewReader(settings)); err != nil {
		return fail("install", fmt.Errorf("%w: %s", err, stderr))
	}
	u.logf(h.Name, "install", "%s", shown)
	cmd := "set -a; . " + shellQuote(dir+"/env") + "; set +a; rm -f " + shellQuote(dir+"/env") + "; exec sh " + shellQuote(dir+"/install.sh")
	out, stderr, err = conn.Sudo(ctx, cmd, u.o.SudoPassword, nil)
	_, _, _ = conn.Run(ctx, "rm -f "+shellQuote(dir+"/env"), nil)
	if err != nil {
		return fail("install", fmt.Errorf("%w: %s", err, lastLines(stderr+out, 5)))
	}
	if !strings.Contains(out, "no change") {
		res.Changed = true
	}

	name, _, err := conn.Run(ctx, "hostname", nil)
	if err != nil {
		return fail("ready", err)
	}
	name = strings.ToLower(strings.TrimSpace(name))
	if i := slices.Index(h.InstallFlags, "--node-name"); i >= 0 && i+1 < len(h.InstallFlags) {
		name = h.InstallFlags[i+1]
	}
	u.logf(h.Name, "ready", "waiting for node %s", name)
	unit := "kasa"
	if h.Role == RoleAgent {
		unit = "kasa-agent"
	}
	restarts, _, _ := conn.Run(ctx, "systemctl show -p NRestarts --value "+unit, nil)
	if err := u.waitReady(ctx, conn, name, unit, strings.TrimSpace(restarts)); err != nil {
		return fail("ready", err)
	}
	state := "unchanged"
	if res.Changed {
		state = "installed"
	}
	if then != nil {
		if err := then(ctx, conn); err != nil {
			return fail("kubeconfig", err)
		}
	}
	u.logf(h.Name, "done", "node %s Ready (%s, %s)", name, state, time.Since(start).Round(100*time.Millisecond))
	return res
}

// installSettings returns the settings install.sh runs with on h, as a
// file for sh to source: env, then the host's own environment, then the
// secrets among its flags (a --datastore-endpoint), which go to the
// service's environment file as their KASA_* variables; INSTALL_KASA_EXEC
// holds args (the command and its flags) without them, quoted so that each
// reaches kasa exactly. It also returns the command line to show, which
// holds no secret.
func installSettings(h *Host, args []string, env map[string]string, binary string) (settings, shown string, err error) {
	flags, secrets, err := splitSecrets(h.Role, args[1:])
	if err != nil {
		return "", "", fmt.Errorf("installFlags: %w", err)
	}
	var b strings.Builder
	for _, k := range sortedKeys(env) {
		fmt.Fprintf(&b, "%s=%s\n", k, shellQuote(env[k]))
	}
	for _, k := range sortedKeys(h.Environment) {
		fmt.Fprintf(&b, "%s=%s\n", k, shellQuote(h.Environment[k]))
	}
	// A flag wins over the environment, in kasa as here.
	var moved []string
	for _, s := range secrets {
		fmt.Fprintf(&b, "%s=%s\n", s.Var, shellQuote(s.Value))
		moved = append(moved, s.Flag)
	}
	cmd := append([]string{args[0]}, flags...)
	fmt.Fprintf(&b, "INSTALL_KASA_BINARY=%s\nINSTALL_KASA_EXEC=%s\n", shellQuote(binary), shellQuote(execLine(cmd)))
	shown = strings.Join(cmd, " ")
	if len(moved) > 0 {
		shown += " (" + strings.Join(slices.Compact(moved), ", ") + " in the service's environment file)"
	}
	return b.String(), shown, nil
}

func serverArgs(c *Cluster, srv *Host) []string {
	args := []string{"server", "--tls-san", srv.SSH.Address}
	if a := c.Spec.RegistrationAddress; a != "" {
		if h, _, err := net.SplitHostPort(a); err == nil {
			a = h
		}
		args = append(args, "--tls-san", strings.Trim(a, "[]"))
	}
	for _, san := range c.Spec.TLSSANs {
		args = append(args, "--tls-san", san)
	}
	return append(args, srv.InstallFlags...)
}

func writeTemp(data []byte) (string, error) {
	f, err := os.CreateTemp("", "kasa-up-")
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Down uninstalls kasa from every host of the cluster, agents first, and
// removes the cluster's context from the kubeconfig.
func Down(ctx context.Context, c *Cluster, o Options) []Result {
	var order []*Host
	for i := range c.Spec.Hosts {
		if c.Spec.Hosts[i].Role == RoleAgent {
			order = append(order, &c.Spec.Hosts[i])
		}
	}
	// Servers last, the first of them at the very end.
	servers := c.Servers()
	slices.Reverse(servers)
	order = append(order, servers...)
	u := &run{c: c, o: o}
	var results []Result
	for _, h := range order {
		start := time.Now()
		res := Result{Host: h.Name, Role: h.Role}
		conn, err := Dial(ctx, h.target(), o.Auth)
		if err != nil {
			res.Err = fmt.Errorf("%s: connect: %w", h.Name, err)
			u.logf(h.Name, "connect", "failed: %v", err)
			results = append(results, res)
			continue
		}
		cmd := "for s in /usr/local/bin/kasa-agent-uninstall.sh /usr/local/bin/kasa-uninstall.sh; do if [ -x $s ]; then $s; exit; fi; done; echo 'kasa is not installed'"
		out, stderr, err := conn.Sudo(ctx, cmd, o.SudoPassword, nil)
		if err != nil {
			res.Err = fmt.Errorf("%s: uninstall: %w: %s", h.Name, err, lastLines(stderr+out, 5))
			u.logf(h.Name, "uninstall", "failed: %v", err)
		} else {
			_, _, _ = conn.Run(ctx, "rm -rf \"$HOME\"/"+remoteDir, nil)
			u.logf(h.Name, "uninstall", "%s", lastLines(out, 1))
		}
		conn.Close()
		res.Took = time.Since(start)
		results = append(results, res)
	}
	if err := RemoveContext(o.Kubeconfig, c.Metadata.Name); err != nil {
		results = append(results, Result{Host: "kubeconfig", Err: err})
	}
	return results
}

// target is how the host is reached.
func (h *Host) target() Target {
	return Target{Address: h.SSH.Address, Port: h.SSH.Port, User: h.SSH.User, KeyPath: h.SSH.KeyPath, Bastion: h.SSH.Bastion}
}
