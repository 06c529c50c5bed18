package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/kasa-io/kasa/pkg/settings"
)

// newFlags returns the server's flag set parsed from args.
func newFlags(t *testing.T, args ...string) (*ServerOptions, *pflag.FlagSet) {
	t.Helper()
	o := &ServerOptions{}
	fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return o, fs
}

func env(vars map[string]string) settings.Sources {
	return settings.Sources{LookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, filepath.Join(dir, "config.yaml"), "https-listen-port: 7000\ndata-dir: /from/file\ncluster-cidr: 10.50.0.0/16\n")
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantPort int
		wantDir  string
		wantCIDR string
	}{
		{"file over default", []string{"--config", file}, nil, 7000, "/from/file", "10.50.0.0/16"},
		{"env over file", []string{"--config", file}, map[string]string{"KASA_HTTPS_LISTEN_PORT": "7100"}, 7100, "/from/file", "10.50.0.0/16"},
		{"flag over env", []string{"--config", file, "--https-listen-port", "7200"}, map[string]string{"KASA_HTTPS_LISTEN_PORT": "7100"}, 7200, "/from/file", "10.50.0.0/16"},
		{"config file from env", nil, map[string]string{"KASA_CONFIG_FILE": file, "KASA_DATA_DIR": "/from/env"}, 7000, "/from/env", "10.50.0.0/16"},
		{"defaults without file", []string{"--config", filepath.Join(dir, "none.yaml")}, nil, 0, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, fs := newFlags(t, tt.args...)
			err := settings.Resolve(fs, env(tt.env))
			if tt.wantPort == 0 {
				if err == nil || !strings.Contains(err.Error(), "none.yaml") {
					t.Fatalf("want an error naming the missing file, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.HTTPSPort != tt.wantPort || o.DataDir != tt.wantDir || o.ClusterCIDR != tt.wantCIDR {
				t.Fatalf("got port %d dir %s cidr %s", o.HTTPSPort, o.DataDir, o.ClusterCIDR)
			}
		})
	}
}

func TestDefaultConfigFileMissingIsFine(t *testing.T) {
	o, fs := newFlags(t)
	// Stand in for /etc/kasa/config.yaml without marking the flag as given.
	if err := fs.Lookup(settings.ConfigFlag).Value.Set(filepath.Join(t.TempDir(), "config.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := settings.Resolve(fs, env(nil)); err != nil {
		t.Fatal(err)
	}
	if o.HTTPSPort != DefaultHTTPSPort || o.DataDir != settings.DefaultDataDir {
		t.Fatalf("defaults changed: %+v", o)
	}
}

func TestEnvAliases(t *testing.T) {
	empty := writeFile(t, filepath.Join(t.TempDir(), "empty.yaml"), "")
	o, fs := newFlags(t)
	err := settings.Resolve(fs, env(map[string]string{
		"KASA_CONFIG_FILE":       empty,
		"KASA_KUBECONFIG_OUTPUT": "/tmp/k.yaml",
		"KASA_KUBECONFIG_MODE":   "0644",
		"KASA_TOKEN":             "s3cret",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if o.WriteKubeconfig != "/tmp/k.yaml" || o.WriteKubeconfigMode != "0644" || o.Token != "s3cret" {
		t.Fatalf("aliases not applied: %+v", o)
	}
}

func TestDropInsAndLists(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, filepath.Join(dir, "config.yaml"), "tls-san: [a.example]\nkube-apiserver-arg:\n  - v=2\ndisable-agent: true\n")
	writeFile(t, file+".d/20-more.yaml", "tls-san+: [c.example]\n")
	writeFile(t, file+".d/10-some.yaml", "tls-san+:\n  - b.example\nhttps-listen-port: 7443\n")
	writeFile(t, file+".d/30-ignored.txt", "not: yaml: at all")
	o, fs := newFlags(t, "--config", file)
	if err := settings.Resolve(fs, env(nil)); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(o.TLSSANs, ","); got != "a.example,b.example,c.example" {
		t.Fatalf("tls-san = %s", got)
	}
	if o.HTTPSPort != 7443 || !o.DisableAgent || len(o.APIServerArgs) != 1 {
		t.Fatalf("got %+v", o)
	}
	// The command line replaces a list from the files.
	o, fs = newFlags(t, "--config", file, "--tls-san", "z.example")
	if err := settings.Resolve(fs, env(nil)); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(o.TLSSANs, ","); got != "z.example" {
		t.Fatalf("tls-san = %s", got)
	}
}

func TestConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		want          []string
	}{
		{"unknown key", "https-listen-port: 1\nbogus-key: 1\n", []string{"unknown key \"bogus-key\"", "bad.yaml"}},
		{"malformed", "a: [unclosed\n", []string{"malformed YAML", "bad.yaml"}},
		{"not a mapping", "- a\n- b\n", []string{"want a mapping", "bad.yaml"}},
		{"bad value type", "https-listen-port: seven\n", []string{"https-listen-port", "bad.yaml"}},
		{"nested map", "tls-san:\n  a: b\n", []string{"tls-san", "want a string"}},
		{"list for scalar", "data-dir: [a, b]\n", []string{"data-dir", "one value"}},
		{"config key itself", "config: /x\n", []string{"unknown key \"config\""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := writeFile(t, filepath.Join(dir, tt.name, "bad.yaml"), tt.content)
			_, fs := newFlags(t, "--config", file)
			err := settings.Resolve(fs, env(nil))
			if err == nil {
				t.Fatal("want an error")
			}
			if !errors.Is(err, settings.ErrConfig) {
				t.Errorf("error %q does not wrap settings.ErrConfig", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestSensitiveValuesAreNotEchoed(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.Int("secret-number", 0, "")
	settings.Sensitive(fs, "secret-number")
	err := settings.Resolve(fs, env(map[string]string{"KASA_SECRET_NUMBER": "hunter2"}))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("want an error that hides the value, got %v", err)
	}
}

func TestEmptyFile(t *testing.T) {
	file := writeFile(t, filepath.Join(t.TempDir(), "c.yaml"), "# only a comment\n")
	_, fs := newFlags(t, "--config", file)
	if err := settings.Resolve(fs, env(nil)); err != nil {
		t.Fatal(err)
	}
}
