package agent

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/settings"
)

// cleanEnv unsets every KASA_* variable for the test, so that the
// machine's settings do not leak in, and points KASA_CONFIG_FILE at an
// empty file: the default /etc/kasa/config.yaml is not read.
func cleanEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "KASA_") {
			t.Setenv(k, "") // restored after the test
			if err := os.Unsetenv(k); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Setenv("KASA_CONFIG_FILE", configFile(t, ""))
}

// configFile writes a config file and returns its path.
func configFile(t *testing.T, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// execute runs kasa agent with args and returns the settings it would
// run with.
func execute(t *testing.T, args ...string) (*config.AgentNode, error) {
	t.Helper()
	var got *config.AgentNode
	host := func() config.Host {
		return config.Host{Hostname: "Worker-1", DefaultIP: netip.MustParseAddr("192.0.2.20"), ReadFile: os.ReadFile}
	}
	cmd := newCommand(host, func(_ *cobra.Command, cfg *config.AgentNode) error {
		got = cfg
		return nil
	})
	cmd.SetArgs(args)
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	err := cmd.Execute()
	if err == nil && got == nil {
		t.Fatal("kasa agent did not run")
	}
	if err != nil && got != nil {
		t.Fatalf("kasa agent ran despite %v", err)
	}
	return got, err
}

// TestSettings: each setting comes from its flag, else from KASA_<FLAG>
// or an alias (KASA_URL), else from the config file, else its default.
func TestSettings(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("  file-s3cret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := configFile(t, `server: https://file.example:6443
token-file: `+tokenFile+`
node-label: [tier=back, zone=b]
node-taint: dedicated=db:NoSchedule
kubelet-arg: [max-pods=50]
lb-server-port: 7444
node-ip: 192.0.2.30,2001:db8::30
`)
	for _, tt := range []struct {
		name  string
		env   map[string]string
		args  []string
		check func(*config.AgentNode) bool
	}{
		{"flags", nil, []string{"-s", "https://10.0.0.1", "-t", "flag-s3cret-0123456789", "--node-name", "DB-1", "--node-ip", "192.0.2.21",
			"--kubelet-arg", "max-pods=20", "--protect-kernel-defaults", "-d", "/srv/kasa", "--debug", "-v", "2"},
			func(a *config.AgentNode) bool {
				return a.Server == "https://10.0.0.1:6443" && a.Token == "flag-s3cret-0123456789" && a.NodeName == "db-1" &&
					slices.Equal(a.NodeIPs, []netip.Addr{netip.MustParseAddr("192.0.2.21")}) && slices.Equal(a.Agent.KubeletArgs, []string{"max-pods=20"}) &&
					a.Agent.ProtectKernelDefaults && a.DataDir == "/srv/kasa" && a.Debug && a.Verbosity == 2 && a.LBServerPort == config.DefaultLBServerPort
			}},
		{"host defaults", nil, []string{"--server", "https://10.0.0.1:6443"}, func(a *config.AgentNode) bool {
			return a.NodeName == "worker-1" && slices.Equal(a.NodeIPs, []netip.Addr{netip.MustParseAddr("192.0.2.20")}) &&
				a.DataDir == settings.DefaultDataDir && a.Token == "" && a.Agent.PrivateRegistry == "/etc/kasa/registries.yaml"
		}},
		{"environment", map[string]string{"KASA_URL": "https://env.example:6443", "KASA_TOKEN": "env-s3cret-0123456789",
			"KASA_NODE_LABEL": "a=b", "KASA_LB_SERVER_PORT": "7445", "KASA_DATA_DIR": "/srv/env"}, nil,
			func(a *config.AgentNode) bool {
				return a.Server == "https://env.example:6443" && a.Token == "env-s3cret-0123456789" && a.Agent.NodeLabels["a"] == "b" &&
					a.LBServerPort == 7445 && a.DataDir == "/srv/env"
			}},
		{"KASA_SERVER before its alias KASA_URL", map[string]string{"KASA_SERVER": "https://first.example:6443", "KASA_URL": "https://second.example:6443"}, nil,
			func(a *config.AgentNode) bool { return a.Server == "https://first.example:6443" }},
		{"config file", nil, []string{"--config", file}, func(a *config.AgentNode) bool {
			return a.Server == "https://file.example:6443" && a.Token == "file-s3cret-0123456789" &&
				a.Agent.NodeLabels["tier"] == "back" && a.Agent.NodeLabels["zone"] == "b" && slices.Equal(a.Agent.NodeTaints, []string{"dedicated=db:NoSchedule"}) &&
				slices.Equal(a.Agent.KubeletArgs, []string{"max-pods=50"}) && a.LBServerPort == 7444 &&
				slices.Equal(a.NodeIPs, []netip.Addr{netip.MustParseAddr("192.0.2.30"), netip.MustParseAddr("2001:db8::30")})
		}},
		{"flag over environment over file", map[string]string{"KASA_URL": "https://env.example:6443", "KASA_LB_SERVER_PORT": "7446"},
			[]string{"-c", file, "--server", "https://flag.example:6443"}, func(a *config.AgentNode) bool {
				return a.Server == "https://flag.example:6443" && a.LBServerPort == 7446 && a.Agent.NodeLabels["tier"] == "back"
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cleanEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			a, err := execute(t, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(a) {
				t.Errorf("%+v %+v", *a, *a.Agent)
			}
		})
	}
}

// TestBadSettings: a bad value stops kasa agent before it runs, with an
// error that names the flag, the variable or the file's key, and never a
// secret.
func TestBadSettings(t *testing.T) {
	const server = "--server=https://10.0.0.1:6443"
	for _, tt := range []struct {
		name   string
		env    map[string]string
		file   string
		args   []string
		want   []string
		config bool
	}{
		{name: "no server", want: []string{"no server to join", "--server", "KASA_URL"}},
		{name: "flag", args: []string{"--server", "http://10.0.0.1:6443"}, want: []string{`invalid --server "http://10.0.0.1:6443"`}},
		{name: "a password in the server URL", args: []string{"--server", "https://me:pa-s3cret@10.0.0.1"}, want: []string{"invalid --server", "without a user, password"}},
		{name: "port", args: []string{server, "--lb-server-port", "0"}, want: []string{"invalid --lb-server-port 0"}},
		{name: "label", args: []string{server, "--node-label", "novalue"}, want: []string{`invalid --node-label "novalue"`}},
		{name: "kubelet flag", args: []string{server, "--kubelet-arg", "protect-kernel-defaults=maybe"}, want: []string{"invalid --kubelet-arg"}},
		{name: "environment", env: map[string]string{"KASA_LB_SERVER_PORT": "many"}, args: []string{server}, want: []string{"environment variable KASA_LB_SERVER_PORT"}},
		{name: "environment, checked", env: map[string]string{"KASA_URL": "ftp://10.0.0.1"}, want: []string{"invalid --server"}},
		{name: "secret in the environment", env: map[string]string{"KASA_TOKEN": "a s3cret"}, args: []string{server}, want: []string{"invalid --token"}},
		{name: "token and token file", args: []string{server, "--token", "x-s3cret", "--token-file", "/x"}, want: []string{"--token and --token-file are both set"}},
		{name: "missing token file", args: []string{server, "--token-file", "/nonexistent/token"}, want: []string{"--token-file", "/nonexistent/token"}},
		{name: "config key", file: "node-taint: {a: b}\n", args: []string{server}, want: []string{`key "node-taint"`}, config: true},
		{name: "server's key in the agent's file", file: "cluster-cidr: 10.42.0.0/16\n", args: []string{server}, want: []string{`unknown key "cluster-cidr"`}, config: true},
		{name: "config value, checked", file: "node-taint: [dedicated=db]\n", args: []string{server}, want: []string{`invalid --node-taint "dedicated=db"`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cleanEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := tt.args
			if tt.file != "" {
				args = append(args, "--config", configFile(t, tt.file))
			}
			_, err := execute(t, args...)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q, want %q in it", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the secret in %q", err)
			}
			if errors.Is(err, settings.ErrConfig) != tt.config {
				t.Errorf("%q: config file error %v, want %v", err, !tt.config, tt.config)
			}
		})
	}
}

// TestChildEnv: child processes get kasa's environment without its KASA_*
// settings, which may hold secrets.
func TestChildEnv(t *testing.T) {
	t.Setenv("KASA_TOKEN", "a-s3cret")
	t.Setenv("KASA_AGENT_TOKEN", "another-s3cret")
	t.Setenv("KASAX", "kept")
	t.Setenv("HTTPS_PROXY", "http://proxy:3128")
	env := ChildEnv()
	for _, kv := range env {
		if strings.HasPrefix(kv, "KASA_") {
			t.Errorf("%s passed on", kv)
		}
	}
	for _, want := range []string{"KASAX=kept", "HTTPS_PROXY=http://proxy:3128"} {
		if !slices.Contains(env, want) {
			t.Errorf("%s not passed on", want)
		}
	}
}
