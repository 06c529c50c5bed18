package kubectl

import (
	"testing"

	"github.com/kasa-io/kasa/pkg/kubeconfig"
)

// TestDefaultKubeconfig: the variables kasa kubectl is run with pick its
// kubeconfig through kubeconfig.DefaultPath.
func TestDefaultKubeconfig(t *testing.T) {
	readable := map[string]bool{"/etc/kasa/kasa.yaml": true, "/tmp/moved.yaml": true}
	env := func(vars map[string]string) Env {
		return Env{
			LookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok },
			Readable:  func(p string) bool { return readable[p] },
		}
	}
	tests := []struct {
		name string
		vars map[string]string
		args []string
		want string
	}{
		{"the server's kubeconfig", nil, []string{"get", "pods"}, "/etc/kasa/kasa.yaml"},
		{"KUBECONFIG wins", map[string]string{"KUBECONFIG": "/x"}, []string{"get"}, ""},
		{"--kubeconfig wins", nil, []string{"--kubeconfig", "/x", "get"}, ""},
		{"--kubeconfig= wins", nil, []string{"get", "--kubeconfig=/x"}, ""},
		{"after -- it is an argument", nil, []string{"exec", "p", "--", "--kubeconfig=/x"}, "/etc/kasa/kasa.yaml"},
		{"moved by KASA_KUBECONFIG_OUTPUT", map[string]string{"KASA_KUBECONFIG_OUTPUT": "/tmp/moved.yaml"}, nil, "/tmp/moved.yaml"},
		{"unreadable: kubectl's own default", map[string]string{"KASA_KUBECONFIG_OUTPUT": "/nope"}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := kubeconfig.DefaultPath(env(tt.vars).Kubeconfig(), tt.args)
			if got != tt.want || ok != (tt.want != "") {
				t.Fatalf("got %q %v, want %q", got, ok, tt.want)
			}
		})
	}
	if e := env(map[string]string{"KUBECONFIG": "/x"}).Kubeconfig(); e.Kubeconfig != "/x" || !e.KubeconfigSet {
		t.Errorf("KUBECONFIG read as %+v", e)
	}
}
