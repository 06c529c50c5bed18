package hosts

import (
	"context"
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// AdminKubeconfig is where kasa server writes its admin kubeconfig.
const AdminKubeconfig = "/etc/kasa/kasa.yaml"

// Client is a client, from this machine, of the kasa server that runs in
// the host: its admin kubeconfig (waited for up to wait) aimed at the
// host's address instead of 127.0.0.1, each request limited to 10 s.
func (h *Host) Client(ctx context.Context, wait time.Duration) (kubernetes.Interface, error) {
	deadline := time.Now().Add(wait)
	var kc string
	for {
		out, stderr, err := h.Exec(ctx, "cat", AdminKubeconfig)
		if err == nil {
			kc = out
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("host %s: no admin kubeconfig within %s: %w %s", h.Name, wait, err, stderr)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	cfg, err := clientcmd.Load([]byte(kc))
	if err != nil {
		return nil, fmt.Errorf("host %s: %s: %w", h.Name, AdminKubeconfig, err)
	}
	for _, c := range cfg.Clusters {
		c.Server = "https://" + h.IP + ":6443"
	}
	rc, err := clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig()
	if err != nil {
		return nil, err
	}
	rc.Timeout = 10 * time.Second
	return kubernetes.NewForConfig(rc)
}
