package server

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

	"github.com/kasa-io/kasa/pkg/addons"
	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/settings"
)

// cleanEnv unsets every KASA_* variable for the test, so that the
// machine's settings do not leak in, and makes config files fail loudly
// unless a test names one: the default /etc/kasa/config.yaml is not read.
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
	t.Setenv("KASA_CONFIG_FILE", filepath.Join(t.TempDir(), "none.yaml")) // -c/--config wins over it
	if err := os.WriteFile(os.Getenv("KASA_CONFIG_FILE"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
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

// execute runs kasa server with args and returns the settings it would
// run with.
func execute(t *testing.T, args ...string) (*config.Server, error) {
	t.Helper()
	var got *config.Server
	host := func() config.Host {
		return config.Host{Hostname: "Node-1", DefaultIP: netip.MustParseAddr("192.0.2.10"), ReadFile: os.ReadFile}
	}
	cmd := newCommand(host, func(_ *cobra.Command, cfg *config.Server) error {
		got = cfg
		return nil
	})
	cmd.SetArgs(args)
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	err := cmd.Execute()
	if err == nil && got == nil {
		t.Fatal("kasa server did not run")
	}
	if err != nil && got != nil {
		t.Fatalf("kasa server ran despite %v", err)
	}
	return got, err
}

// TestSettings: each setting comes from its flag, else from KASA_<FLAG>
// or an alias, else from the config file, else its default.
func TestSettings(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("from-a-file-s3cret-0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := configFile(t, `cluster-domain: file.example
https-listen-port: 7443
disable: [traefik, servicelb]
kube-apiserver-arg: [a=1, b=2]
node-label: [tier=front]
write-kubeconfig-mode: "0644"
token-file: `+tokenFile+`
`)
	for _, tt := range []struct {
		name  string
		env   map[string]string
		args  []string
		check func(*config.Server) bool
	}{
		{"defaults", nil, nil, func(s *config.Server) bool {
			return s.DataDir == settings.DefaultDataDir && s.HTTPSPort == 6443 && s.ClusterDomain == "cluster.local" &&
				s.NodeName == "node-1" && s.AdvertiseAddress == netip.MustParseAddr("192.0.2.10") &&
				s.WriteKubeconfig == config.DefaultKubeconfig && s.WriteKubeconfigMode == 0o600 && s.Agent != nil && s.Token == "" && len(s.Disable) == 0
		}},
		{"flags", nil, []string{"-d", "/srv/kasa", "--cluster-domain", "corp.example", "--disable", "traefik,metrics-server",
			"--kube-apiserver-arg", "a=1", "--kube-apiserver-arg", "a=2", "--node-label", "x=y", "-t", "flag-s3cret-0123456789", "--disable-agent"},
			func(s *config.Server) bool {
				return s.DataDir == "/srv/kasa" && s.ClusterDomain == "corp.example" && s.Disable.Has(addons.Traefik) && s.Disable.Has(addons.MetricsServer) &&
					!s.Disable.Has(addons.CoreDNS) && slices.Equal(s.APIServerArgs, []string{"a=1", "a=2"}) && s.Token == "flag-s3cret-0123456789" &&
					s.DisableAgent && s.Agent == nil
			}},
		{"environment", map[string]string{"KASA_CLUSTER_DOMAIN": "env.example", "KASA_TOKEN": "env-s3cret-0123456789",
			"KASA_KUBECONFIG_OUTPUT": "/tmp/k.yaml", "KASA_KUBECONFIG_MODE": "0640", "KASA_DISABLE": "coredns", "KASA_DISABLE_AGENT": "true"}, nil,
			func(s *config.Server) bool {
				return s.ClusterDomain == "env.example" && s.Token == "env-s3cret-0123456789" && s.WriteKubeconfig == "/tmp/k.yaml" &&
					s.WriteKubeconfigMode == 0o640 && s.Disable.Has(addons.CoreDNS) && s.Agent == nil
			}},
		{"config file", nil, []string{"--config", file}, func(s *config.Server) bool {
			return s.ClusterDomain == "file.example" && s.HTTPSPort == 7443 && s.Disable.Has(addons.Traefik) && s.Disable.Has(addons.ServiceLB) &&
				slices.Equal(s.APIServerArgs, []string{"a=1", "b=2"}) && s.Agent.NodeLabels["tier"] == "front" && s.WriteKubeconfigMode == 0o644 &&
				s.Token == "from-a-file-s3cret-0123"
		}},
		{"config file from KASA_CONFIG_FILE", map[string]string{"KASA_CONFIG_FILE": file}, nil, func(s *config.Server) bool {
			return s.ClusterDomain == "file.example" && s.HTTPSPort == 7443
		}},
		{"flag over environment over file", map[string]string{"KASA_CLUSTER_DOMAIN": "env.example", "KASA_HTTPS_LISTEN_PORT": "8443"},
			[]string{"-c", file, "--cluster-domain", "flag.example"}, func(s *config.Server) bool {
				return s.ClusterDomain == "flag.example" && s.HTTPSPort == 8443 && s.Disable.Has(addons.Traefik)
			}},
		{"a relative data dir is made absolute", nil, []string{"--data-dir", "state"}, func(s *config.Server) bool {
			wd, _ := os.Getwd()
			return s.DataDir == filepath.Join(wd, "state")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cleanEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			s, err := execute(t, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(s) {
				t.Errorf("%+v", *s)
			}
		})
	}
}

// TestBadSettings: a bad value stops kasa server before it runs, with an
// error that names the flag, the variable or the file's key, and never a
// secret.
func TestBadSettings(t *testing.T) {
	const secret = "bad s3cret with spaces"
	for _, tt := range []struct {
		name   string
		env    map[string]string
		file   string
		args   []string
		want   []string
		config bool // an error of the config file (settings.ErrConfig)
	}{
		{name: "flag", args: []string{"--https-listen-port", "70000"}, want: []string{"invalid --https-listen-port 70000"}},
		{name: "flag not a number", args: []string{"--https-listen-port", "port"}, want: []string{"--https-listen-port"}},
		{name: "unknown flag", args: []string{"--no-such-flag"}, want: []string{"unknown flag: --no-such-flag"}},
		{name: "an argument", args: []string{"extra"}, want: []string{`unknown command "extra"`}},
		{name: "add-on", args: []string{"--disable", "traefik,kafka"}, want: []string{`invalid --disable "kafka"`}},
		{name: "environment", env: map[string]string{"KASA_HTTPS_LISTEN_PORT": "port"}, want: []string{"environment variable KASA_HTTPS_LISTEN_PORT"}},
		{name: "environment, checked", env: map[string]string{"KASA_CLUSTER_CIDR": "10.42.0.0/99"}, want: []string{"invalid --cluster-cidr"}},
		{name: "secret in the environment", env: map[string]string{"KASA_TOKEN": secret}, want: []string{"invalid --token"}},
		{name: "config key", file: "https-listen-port: [1, 2]\n", want: []string{`key "https-listen-port"`}, config: true},
		{name: "unknown config key", file: "no-such-key: 1\n", want: []string{`unknown key "no-such-key"`}, config: true},
		{name: "config value, checked", file: "service-cidr: 10.43.0.1/16\n", want: []string{"invalid --service-cidr", "did you mean 10.43.0.0/16"}},
		{name: "secret in the config file", file: "agent-token: " + secret + "\n", want: []string{"invalid --agent-token"}},
		{name: "secrets in a list", file: "token: [a-s3cret, another-s3cret]\n", want: []string{`key "token": invalid value (not shown: it is a secret)`}, config: true},
		{name: "missing config file", args: []string{"--config", "/nonexistent/config.yaml"}, want: []string{"/nonexistent/config.yaml"}, config: true},
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
