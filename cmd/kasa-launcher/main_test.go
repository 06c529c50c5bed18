package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The launcher finds the data dir that the command will use: kasa's own
// flags on its own command line, never in a tool's arguments.
func TestDataDirOf(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte("data-dir: /from/config\ntoken: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// An empty config file, so that this machine's /etc/kasa/config.yaml
	// plays no part; --config on the command line still wins over it.
	empty := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KASA_CONFIG_FILE", empty)
	for _, tt := range []struct {
		name string
		env  string
		argv []string
		want string
	}{
		{"default", "", []string{"kasa", "server"}, "/var/lib/kasa"},
		{"--data-dir", "", []string{"kasa", "server", "--token", "x", "--data-dir", "/d1"}, "/d1"},
		{"-d=", "", []string{"/usr/local/bin/kasa", "agent", "-d=/d2", "--node-label", "a=b"}, "/d2"},
		{"another name", "", []string{"./kasa-amd64", "server", "--data-dir=/d3"}, "/d3"},
		{"--config", "", []string{"kasa", "server", "--config", cfg}, "/from/config"},
		{"KASA_DATA_DIR", "/from/env", []string{"kasa", "server"}, "/from/env"},
		{"the flag before the environment", "/from/env", []string{"kasa", "server", "-d", "/d4"}, "/d4"},
		{"kubectl's -d is not kasa's", "", []string{"kasa", "kubectl", "-d", "/not"}, "/var/lib/kasa"},
		{"through a link", "", []string{"/usr/local/bin/kubectl", "--data-dir", "/not"}, "/var/lib/kasa"},
		{"crictl", "/from/env", []string{"crictl", "-d", "/not"}, "/from/env"},
		{"a plugin", "", []string{"kubectl-install", "-d", "/not"}, "/var/lib/kasa"},
		{"an unknown flag is kasa's to judge", "", []string{"kasa", "server", "--frobnicate", "-d", "/d5"}, "/d5"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv("KASA_DATA_DIR", tt.env)
			} else {
				t.Setenv("KASA_DATA_DIR", "")
				os.Unsetenv("KASA_DATA_DIR")
			}
			got, err := dataDirOf(tt.argv)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("dataDirOf(%q) = %s, want %s", tt.argv, got, tt.want)
			}
		})
	}
}
