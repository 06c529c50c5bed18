package up

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/kasa-io/kasa/pkg/settings"
	"github.com/kasa-io/kasa/pkg/up"
	"github.com/kasa-io/kasa/pkg/version"
)

// parse binds the flags of kasa up (or kasa down) and parses args.
func parse(t *testing.T, isUp bool, args ...string) (*flags, *cobra.Command) {
	t.Helper()
	var f flags
	cmd := &cobra.Command{Use: "up"}
	f.bind(cmd, isUp)
	if err := cmd.Flags().Parse(args); err != nil {
		t.Fatal(err)
	}
	return &f, cmd
}

const clusterFile = `apiVersion: kasa.io/v1alpha1
kind: Cluster
metadata:
  name: shop
spec:
  token: ${SHOP_TOKEN}
  hosts:
  - role: server
    ssh: {address: 10.0.0.1, keyPath: /keys/server, bastion: gate}
  - name: worker
    role: agent
    ssh: {address: 10.0.0.2, user: pi}
`

func writeClusterFile(t *testing.T, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestCluster: kasa up's and kasa down's flags make the cluster: hosts
// from --server, --agent or --host, with the SSH defaults of --user,
// --ssh-key and --bastion, or the cluster file (-f), which the flags
// complete and whose name --context replaces.
func TestCluster(t *testing.T) {
	t.Setenv("SHOP_TOKEN", "shop-s3cret-0123456789")
	file := writeClusterFile(t, clusterFile)
	type host struct {
		name, role, user, addr string
		port                   int
		key, bastion           string
		flags                  []string
	}
	for _, tt := range []struct {
		name  string
		up    bool
		args  []string
		want  string // the cluster's name
		hosts []host
		token string
	}{
		{"up, flags", true, []string{"--server", "admin@10.0.0.1:2222", "--agent", "10.0.0.2", "--agent", "pi@10.0.0.3",
			"--user", "ubuntu", "--ssh-key", "/keys/k", "--bastion", "jump@gw", "--server-arg", "--node-label", "--server-arg", "tier=cp",
			"--agent-arg", "--node-label=tier=w", "--server-arg", "--tls-san=a.example,b.example", "--context", "lab"}, "lab", []host{
			{"10.0.0.1", up.RoleServer, "admin", "10.0.0.1", 2222, "/keys/k", "jump@gw", []string{"--node-label", "tier=cp", "--tls-san=a.example,b.example"}},
			{"10.0.0.2", up.RoleAgent, "ubuntu", "10.0.0.2", 22, "/keys/k", "jump@gw", []string{"--node-label=tier=w"}},
			{"10.0.0.3", up.RoleAgent, "pi", "10.0.0.3", 22, "/keys/k", "jump@gw", []string{"--node-label=tier=w"}},
		}, ""},
		{"up, defaults", true, []string{"--server", "10.0.0.1"}, "kasa", []host{
			{"10.0.0.1", up.RoleServer, "root", "10.0.0.1", 22, "", "", nil},
		}, ""},
		{"up, cluster file", true, []string{"-f", file}, "shop", []host{
			{"10.0.0.1", up.RoleServer, "root", "10.0.0.1", 22, "/keys/server", "gate", nil},
			{"worker", up.RoleAgent, "pi", "10.0.0.2", 22, "", "", nil},
		}, "shop-s3cret-0123456789"},
		{"up, cluster file completed by flags", true, []string{"--file", file, "--ssh-key", "/keys/k", "--bastion", "jump", "--context", "lab", "--user", "ignored"}, "lab", []host{
			{"10.0.0.1", up.RoleServer, "root", "10.0.0.1", 22, "/keys/server", "gate", nil},
			{"worker", up.RoleAgent, "pi", "10.0.0.2", 22, "/keys/k", "jump", nil},
		}, "shop-s3cret-0123456789"},
		{"down, hosts", false, []string{"--host", "10.0.0.2", "--host", "pi@10.0.0.3:2200", "--user", "admin", "--ssh-key", "/keys/k", "--bastion", "jump", "--context", "lab"}, "lab", []host{
			{"10.0.0.2", up.RoleAgent, "admin", "10.0.0.2", 22, "/keys/k", "jump", nil},
			{"10.0.0.3", up.RoleAgent, "pi", "10.0.0.3", 2200, "/keys/k", "jump", nil},
		}, ""},
		{"down, cluster file", false, []string{"-f", file}, "shop", []host{
			{"10.0.0.1", up.RoleServer, "root", "10.0.0.1", 22, "/keys/server", "gate", nil},
			{"worker", up.RoleAgent, "pi", "10.0.0.2", 22, "", "", nil},
		}, "shop-s3cret-0123456789"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := parse(t, tt.up, tt.args...)
			c, err := f.cluster()
			if err != nil {
				t.Fatal(err)
			}
			if c.APIVersion != up.APIVersion || c.Kind != up.Kind || c.Metadata.Name != tt.want || c.Spec.Token != tt.token {
				t.Errorf("cluster %s %s %q, token set %v", c.APIVersion, c.Kind, c.Metadata.Name, c.Spec.Token != "")
			}
			var got []host
			for _, h := range c.Spec.Hosts {
				got = append(got, host{h.Name, h.Role, h.SSH.User, h.SSH.Address, h.SSH.Port, h.SSH.KeyPath, h.SSH.Bastion, h.InstallFlags})
			}
			if !slices.EqualFunc(got, tt.hosts, func(a, b host) bool {
				return a.name == b.name && a.role == b.role && a.user == b.user && a.addr == b.addr && a.port == b.port &&
					a.key == b.key && a.bastion == b.bastion && slices.Equal(a.flags, b.flags)
			}) {
				t.Errorf("hosts\n%+v\nwant\n%+v", got, tt.hosts)
			}
		})
	}
}

// TestClusterErrors: hosts given twice over, or badly, are refused with
// the flag at fault; a secret is never in the error.
func TestClusterErrors(t *testing.T) {
	file := writeClusterFile(t, clusterFile)
	t.Setenv("SHOP_TOKEN", "shop-s3cret-0123456789")
	for _, tt := range []struct {
		name string
		up   bool
		args []string
		want string
	}{
		{"no hosts", true, nil, "no hosts: give -f cluster.yaml, or --server [USER@]HOST and --agent [USER@]HOST"},
		{"agents without a server", true, []string{"--agent", "10.0.0.2"}, "no hosts"},
		{"a file and hosts", true, []string{"-f", file, "--agent", "10.0.0.2"}, "give -f or --server/--agent, not both"},
		{"down: --host and a file", false, []string{"--host", "10.0.0.2", "-f", file}, "give --host, or -f, or --server/--agent"},
		{"down: --host and --server", false, []string{"--host", "10.0.0.2", "--server", "10.0.0.1"}, "give --host, or -f, or --server/--agent"},
		{"bad --server", true, []string{"--server", "10.0.0.1:99999"}, `--server: "10.0.0.1:99999": bad port "99999"`},
		{"bad --agent", true, []string{"--server", "10.0.0.1", "--agent", "pi@"}, `--agent: "pi@": want [USER@]HOST[:PORT]`},
		{"bad --host", false, []string{"--host", "@10.0.0.2"}, `--host: "@10.0.0.2": empty user before @`},
		{"the same host twice", true, []string{"--server", "10.0.0.1", "--agent", "root@10.0.0.1:22"}, "10.0.0.1:22 is listed twice"},
		{"a secret flag without its value", true, []string{"--server", "10.0.0.1", "--server-arg", "--token"}, "installFlags: --token needs a value"},
		{"a server flag for agents", true, []string{"--server", "10.0.0.1", "--agent", "10.0.0.2", "--agent-arg", "--datastore-endpoint=postgres://u:s3cret@db"}, "kasa agent has no --datastore-endpoint flag"},
		{"a missing file", true, []string{"-f", "/nonexistent/cluster.yaml"}, "/nonexistent/cluster.yaml"},
		{"a variable not set", true, []string{"-f", writeClusterFile(t, strings.Replace(clusterFile, "SHOP_TOKEN", "NOT_SET_ANYWHERE", 1))}, "environment variables not set: NOT_SET_ANYWHERE"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := parse(t, tt.up, tt.args...)
			c, err := f.cluster()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("%v (%+v), want an error with %q", err, c, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("a secret in %q", err)
			}
		})
	}
}

// TestOptions: the options of a run come from the flags, the user's home
// (the kubeconfig, known_hosts, default keys, the state) and the
// environment (SSH agent, passwords), or standard input for the sudo
// password.
func TestOptions(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("SSH_AUTH_SOCK", "/run/agent.sock")
	t.Setenv("KASA_SSH_PASSWORD", "ssh-pw")
	t.Setenv("KASA_SUDO_PASSWORD", "sudo-pw")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	options := func(args []string, stdin string) (up.Options, string, error) {
		f, cmd := parse(t, true, args...)
		var stderr bytes.Buffer
		cmd.SetIn(strings.NewReader(stdin))
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&stderr)
		o, err := f.options(cmd)
		return o, stderr.String(), err
	}

	o, stderr, err := options(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if o.Binary != exe || o.Concurrency != 4 || o.Kubeconfig != filepath.Join(home, ".kube", "config") || o.NoSwitchContext ||
		o.StateDir != filepath.Join(home, ".kasa", "up") || o.Out == nil {
		t.Errorf("options %+v", o)
	}
	a := o.Auth
	wantKeys := []string{filepath.Join(home, ".ssh", "id_ed25519"), filepath.Join(home, ".ssh", "id_ecdsa"), filepath.Join(home, ".ssh", "id_rsa")}
	if a.KnownHosts != filepath.Join(home, ".ssh", "known_hosts") || a.AcceptNew || a.Insecure || a.AgentSocket != "/run/agent.sock" ||
		!slices.Equal(a.DefaultKeys, wantKeys) || a.Password != "ssh-pw" {
		t.Errorf("auth %+v", a)
	}
	if o.SudoPassword != "sudo-pw" || stderr != "" {
		t.Errorf("sudo password from KASA_SUDO_PASSWORD: %v; stderr %q", o.SudoPassword == "sudo-pw", stderr)
	}

	o, stderr, err = options([]string{"--kubeconfig-out", "/tmp/kc", "--no-switch-context", "--concurrency", "8",
		"--accept-new-host-keys", "--sudo-password-stdin"}, "from-stdin\r\nnext line\n")
	if err != nil {
		t.Fatal(err)
	}
	if o.Kubeconfig != "/tmp/kc" || !o.NoSwitchContext || o.Concurrency != 8 || !o.Auth.AcceptNew || o.Auth.Insecure || stderr != "" {
		t.Errorf("options %+v, stderr %q", o, stderr)
	}
	if o.SudoPassword != "from-stdin" {
		t.Error("--sudo-password-stdin: not the first line of standard input")
	}
	if o, _, err = options([]string{"--sudo-password-stdin"}, "no-newline"); err != nil || o.SudoPassword != "no-newline" {
		t.Errorf("--sudo-password-stdin without a line break: %v", err)
	}

	o, stderr, err = options([]string{"--insecure-ignore-host-key"}, "")
	if err != nil || !o.Auth.Insecure {
		t.Fatalf("--insecure-ignore-host-key: %v %+v", err, o.Auth)
	}
	if !strings.Contains(stderr, "WARNING: --insecure-ignore-host-key: host keys are not checked") {
		t.Errorf("no warning: %q", stderr)
	}
}

// TestCommands: kasa up takes the install flags and kasa down the hosts to
// uninstall; the sudo password flag is sensitive; --dry-run prints each
// host's plan and connects to none; a cluster file for another kasa
// version is refused.
func TestCommands(t *testing.T) {
	cmds := NewCommands()
	if len(cmds) != 2 || cmds[0].Name() != "up" || cmds[1].Name() != "down" {
		t.Fatalf("commands %v", cmds)
	}
	upCmd, downCmd := cmds[0], cmds[1]
	for _, flag := range []string{"file", "server", "agent", "ssh-key", "user", "bastion", "sudo-password-stdin", "accept-new-host-keys",
		"insecure-ignore-host-key", "kubeconfig-out", "context"} {
		if upCmd.Flags().Lookup(flag) == nil || downCmd.Flags().Lookup(flag) == nil {
			t.Errorf("--%s: not on both commands", flag)
		}
	}
	for _, flag := range []string{"server-arg", "agent-arg", "concurrency", "no-switch-context", "dry-run"} {
		if upCmd.Flags().Lookup(flag) == nil || downCmd.Flags().Lookup(flag) != nil {
			t.Errorf("--%s: want it on kasa up alone", flag)
		}
	}
	if upCmd.Flags().Lookup("host") != nil || downCmd.Flags().Lookup("host") == nil {
		t.Error("--host: want it on kasa down alone")
	}
	if !settings.IsSensitive(upCmd.Flags().Lookup("sudo-password-stdin")) {
		t.Error("--sudo-password-stdin is not marked sensitive")
	}

	run := func(args ...string) (string, error) {
		cmd := NewCommands()[0]
		var out bytes.Buffer
		cmd.SetArgs(args)
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		err := cmd.Execute()
		return out.String(), err
	}
	out, err := run("--server", "10.0.0.1", "--agent", "pi@10.0.0.2:2200", "--server-arg", "--node-label=tier=cp", "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"10.0.0.1         server ssh root@10.0.0.1:22; install kasa server --node-label=tier=cp\n",
		"10.0.0.2         agent  ssh pi@10.0.0.2:2200; install kasa agent \n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run:\n%s\nwant %q", out, want)
		}
	}
	other := strings.Replace(clusterFile, "spec:\n", "spec:\n  version: v9.9.9-other\n", 1)
	t.Setenv("SHOP_TOKEN", "shop-s3cret-0123456789")
	_, err = run("-f", writeClusterFile(t, other), "--dry-run")
	if err == nil || !strings.Contains(err.Error(), "asks for kasa v9.9.9-other, and this is kasa "+version.Version) {
		t.Errorf("another version: %v", err)
	}
	if _, err := run("--dry-run"); err == nil || !strings.Contains(err.Error(), "no hosts") {
		t.Errorf("no hosts: %v", err)
	}
}

// TestSummary: one line per host, failed or changed or not, and an error
// that counts the failed hosts.
func TestSummary(t *testing.T) {
	var out bytes.Buffer
	err := summary(&out, []up.Result{
		{Host: "cp", Role: up.RoleServer, Changed: true},
		{Host: "w1", Role: up.RoleAgent},
		{Host: "w2", Role: up.RoleAgent, Err: errors.New("ssh: handshake failed")},
		{Host: "kubeconfig"},
	}, 1234*time.Millisecond)
	want := `
cp               server ok
w1               agent  ok (unchanged)
w2               agent  FAILED: ssh: handshake failed
kubeconfig              ok
4 hosts, 1 failed, in 1.2s
`
	if out.String() != want {
		t.Errorf("summary:\n%s\nwant:\n%s", out.String(), want)
	}
	if err == nil || err.Error() != "1 of 4 hosts failed; run again to pick up from there" {
		t.Errorf("error %v", err)
	}
	out.Reset()
	if err := summary(&out, []up.Result{{Host: "cp", Role: up.RoleServer}}, time.Second); err != nil || !strings.Contains(out.String(), "1 hosts, 0 failed, in 1s") {
		t.Errorf("all well: %v\n%s", err, out.String())
	}
}
