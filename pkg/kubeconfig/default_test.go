package kubeconfig

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDefaultPath(t *testing.T) {
	readable := map[string]bool{"/etc/kasa/kasa.yaml": true, "/tmp/moved.yaml": true}
	tests := []struct {
		name string
		env  Env
		args []string
		want string
	}{
		{"the server's kubeconfig", Env{}, []string{"get", "pods"}, "/etc/kasa/kasa.yaml"},
		{"KUBECONFIG wins", Env{Kubeconfig: "/x", KubeconfigSet: true}, []string{"get"}, ""},
		{"an empty KUBECONFIG wins too", Env{KubeconfigSet: true}, nil, ""},
		{"--kubeconfig wins", Env{}, []string{"--kubeconfig", "/x", "get"}, ""},
		{"--kubeconfig= wins", Env{}, []string{"get", "--kubeconfig=/x"}, ""},
		{"after -- it is an argument", Env{}, []string{"exec", "p", "--", "--kubeconfig=/x"}, "/etc/kasa/kasa.yaml"},
		{"moved by KASA_KUBECONFIG_OUTPUT", Env{Output: "/tmp/moved.yaml"}, nil, "/tmp/moved.yaml"},
		{"unreadable: kubectl's own default", Env{Output: "/nope"}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.env.Readable = func(p string) bool { return readable[p] }
			got, ok := DefaultPath(tt.env, tt.args)
			if got != tt.want || ok != (tt.want != "") {
				t.Fatalf("got %q %v, want %q", got, ok, tt.want)
			}
		})
	}
}

// TestDefaultPathReadable: without a Readable, the file is opened to see.
func TestDefaultPathReadable(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "kasa.yaml")
	if _, ok := DefaultPath(Env{Output: file}, nil); ok {
		t.Fatal("a missing file was picked")
	}
	if err := os.WriteFile(file, []byte("apiVersion: v1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, ok := DefaultPath(Env{Output: file}, nil); !ok || got != file {
		t.Errorf("got %q %v, want %s", got, ok, file)
	}
}
