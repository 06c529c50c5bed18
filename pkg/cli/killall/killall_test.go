package killall

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/kasa-io/kasa/pkg/settings"
)

// configFile writes a config file and returns its path.
func configFile(t *testing.T, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestDataDir: kasa killall finds the data dir as the server and agent do:
// --data-dir (-d), else KASA_DATA_DIR, else the config file's data-dir
// (the server's or agent's file, whose other keys it ignores), else the
// default; a relative one is made absolute.
func TestDataDir(t *testing.T) {
	serverFile := configFile(t, "data-dir: /srv/file\ncluster-cidr: 10.42.0.0/16\ntoken: a-s3cret-0123456789\nnode-label: [a=b]\n")
	dropIn := configFile(t, "data-dir: /srv/base\n")
	if err := os.MkdirAll(dropIn+".d", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dropIn+".d", "10-data.yaml"), []byte("data-dir: /srv/drop-in\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		want string // the data dir; else the error
		err  string
	}{
		{name: "default", want: settings.DefaultDataDir},
		{name: "flag", args: []string{"--data-dir", "/srv/flag"}, want: "/srv/flag"},
		{name: "short flag", args: []string{"-d", "/srv/flag"}, want: "/srv/flag"},
		{name: "relative", args: []string{"-d", "state"}, want: filepath.Join(wd, "state")},
		{name: "environment", env: map[string]string{"KASA_DATA_DIR": "/srv/env"}, want: "/srv/env"},
		{name: "the server's config file", args: []string{"--config", serverFile}, want: "/srv/file"},
		{name: "config file from KASA_CONFIG_FILE", env: map[string]string{"KASA_CONFIG_FILE": serverFile}, want: "/srv/file"},
		{name: "config drop-in", args: []string{"-c", dropIn}, want: "/srv/drop-in"},
		{name: "environment over file", env: map[string]string{"KASA_DATA_DIR": "/srv/env"}, args: []string{"-c", serverFile}, want: "/srv/env"},
		{name: "flag over environment", env: map[string]string{"KASA_DATA_DIR": "/srv/env"}, args: []string{"-c", serverFile, "-d", "/srv/flag"}, want: "/srv/flag"},
		{name: "empty", args: []string{"--data-dir", ""}, err: "--data-dir is empty"},
		{name: "missing config file", args: []string{"--config", "/nonexistent/config.yaml"}, err: "/nonexistent/config.yaml"},
		{name: "a list in the file", args: []string{"-c", configFile(t, "data-dir: [a, b]\n")}, err: `key "data-dir"`},
		{name: "an argument", args: []string{"now"}, err: `unknown command "now"`},
		{name: "a flag of the server", args: []string{"--token", "x"}, err: "unknown flag: --token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, kv := range os.Environ() {
				if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "KASA_") {
					t.Setenv(k, "")
					if err := os.Unsetenv(k); err != nil {
						t.Fatal(err)
					}
				}
			}
			// Never the machine's /etc/kasa/config.yaml.
			t.Setenv("KASA_CONFIG_FILE", configFile(t, ""))
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			got := ""
			cmd := newCommand(func(_ *cobra.Command, dataDir string) error {
				got = dataDir
				return nil
			})
			cmd.SetArgs(tt.args)
			cmd.SetOut(io.Discard)
			cmd.SetErr(io.Discard)
			err := cmd.Execute()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || got != "" {
					t.Fatalf("%v (ran with %q), want an error with %q", err, got, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("%q %v, want %q", got, err, tt.want)
			}
		})
	}
}
