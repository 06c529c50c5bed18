package agent

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kasa-io/kasa/pkg/datadir"
)

// TestRemoveRetired: the shared identities' files of a node that an earlier
// kasa joined are removed, the node's own are kept, and a node without them
// (a fresh join, a second start) is fine.
func TestRemoveRetired(t *testing.T) {
	np := datadir.New(t.TempDir()).Agent()
	if err := os.MkdirAll(np.TLS(""), 0o700); err != nil {
		t.Fatal(err)
	}
	retired := []string{
		np.TLS("client-flannel.crt"), np.TLS("client-flannel.key"), np.Kubeconfig("flannel"),
		np.TLS("client-local-path.crt"), np.TLS("client-local-path.key"), np.Kubeconfig("local-path"),
	}
	kept := []string{np.TLS("client-kubelet.crt"), np.TLS("client-kubelet.key"), np.Kubeconfig("kubelet"), np.Kubeconfig("kube-proxy")}
	for _, f := range append(retired, kept...) {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := removeRetired(np); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range retired {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s is still there (%v)", filepath.Base(f), err)
		}
	}
	for _, f := range kept {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
		}
	}
}
