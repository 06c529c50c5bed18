package containerd

import (
	"testing"

	"github.com/kasa-io/kasa/pkg/datadir"
)

// TestSocket: containerd, run in the node's folder of the run dir, listens
// where datadir says its socket is (kasa crictl and ctr look there).
func TestSocket(t *testing.T) {
	run := datadir.MachineRun()
	c := Config{RunDir: run.Containerd()}
	if c.Socket() != run.ContainerdSocket() || c.Endpoint() != "unix://"+run.ContainerdSocket() {
		t.Errorf("socket %s, endpoint %s; datadir says %s", c.Socket(), c.Endpoint(), run.ContainerdSocket())
	}
}
