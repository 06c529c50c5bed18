package tools

import "testing"

// TestEnv: crictl and ctr are pointed at the socket the node's containerd
// listens on (TestSocket in pkg/agent/containerd holds it there) and at
// the crictl.yaml the node writes, in the data dir given.
func TestEnv(t *testing.T) {
	const sock = "/run/kasa/containerd/containerd.sock"
	crictl, _ := Lookup("crictl")
	env := crictl.Env("/data")
	for k, want := range map[string]string{
		"CONTAINER_RUNTIME_ENDPOINT": "unix://" + sock,
		"IMAGE_SERVICE_ENDPOINT":     "unix://" + sock,
		"CRI_CONFIG_FILE":            "/data/agent/etc/crictl.yaml",
	} {
		if env[k] != want {
			t.Errorf("crictl %s=%q, want %q", k, env[k], want)
		}
	}
	ctr, _ := Lookup("ctr")
	env = ctr.Env("/data")
	if env["CONTAINERD_ADDRESS"] != sock || env["CONTAINERD_NAMESPACE"] != "k8s.io" {
		t.Errorf("ctr %v, want the socket %s and k8s.io", env, sock)
	}
}
