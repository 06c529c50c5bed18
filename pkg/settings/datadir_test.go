package settings

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestResolveDataDir: with no command line, the data dir comes from
// KASA_DATA_DIR, else the config files (a drop-in over config.yaml, other
// keys ignored), else the default; it is made absolute, and an empty one
// or a bad file is an error.
func TestResolveDataDir(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, filepath.Join(dir, "config.yaml"), "data-dir: /from/file\ntoken: not-read\ncluster-cidr: 10.50.0.0/16\n")
	withDropIn := writeFile(t, filepath.Join(dir, "d", "config.yaml"), "data-dir: /from/file\n")
	writeFile(t, filepath.Join(dir, "d", "config.yaml.d", "50-dir.yaml"), "data-dir: /from/drop-in\n")
	empty := writeFile(t, filepath.Join(dir, "empty.yaml"), "")
	bad := writeFile(t, filepath.Join(dir, "bad.yaml"), "data-dir: [\n")
	wd, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     map[string]string
		want    string
		wantErr string
	}{
		{"config file", map[string]string{"KASA_CONFIG_FILE": file}, "/from/file", ""},
		{"KASA_CONFIG names it too", map[string]string{"KASA_CONFIG": file}, "/from/file", ""},
		{"KASA_DATA_DIR over the file", map[string]string{"KASA_CONFIG_FILE": file, "KASA_DATA_DIR": "/from/env"}, "/from/env", ""},
		{"drop-in over the file", map[string]string{"KASA_CONFIG_FILE": withDropIn}, "/from/drop-in", ""},
		{"default", map[string]string{"KASA_CONFIG_FILE": empty}, DefaultDataDir, ""},
		{"relative", map[string]string{"KASA_CONFIG_FILE": empty, "KASA_DATA_DIR": "here"}, filepath.Join(wd, "here"), ""},
		{"empty", map[string]string{"KASA_CONFIG_FILE": file, "KASA_DATA_DIR": ""}, "", "--data-dir is empty"},
		{"malformed file", map[string]string{"KASA_CONFIG_FILE": bad}, "", bad},
		{"missing file", map[string]string{"KASA_CONFIG_FILE": filepath.Join(dir, "none.yaml")}, "", "none.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveDataDir(env(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %q, %v; want an error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := ResolveDataDir(env(map[string]string{"KASA_CONFIG_FILE": bad})); !errors.Is(err, ErrConfig) {
		t.Errorf("a malformed file: %v, want ErrConfig", err)
	}
}

func env(vars map[string]string) Sources {
	return Sources{LookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
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
