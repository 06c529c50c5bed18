package agent

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/pflag"
	proxyapp "k8s.io/kubernetes/cmd/kube-proxy/app"

	"github.com/kasa-io/kasa/pkg/component"
)

// KubeProxy runs the upstream kube-proxy in iptables mode in this process.
// Start it once the node is registered with its addresses: upstream exits
// the process when the node's addresses change under it.
type KubeProxy struct {
	NodeName    string
	NodeIP      string
	ClusterCIDR string
	Kubeconfig  string
	// Args are the user's --kube-proxy-arg flags, over kasa's defaults.
	Args []string
}

var _ component.Component = (*KubeProxy)(nil)

// Name implements component.Component.
func (p *KubeProxy) Name() string { return "kube-proxy" }

// Run implements component.Component. Upstream kube-proxy does not return
// when its context ends; it stops with the process.
func (p *KubeProxy) Run(ctx context.Context, ready func()) error {
	o := proxyapp.NewOptions()
	fs := pflag.NewFlagSet("kube-proxy", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.AddFlags(fs)
	args := append([]string{
		"--proxy-mode=iptables",
		"--cluster-cidr=" + p.ClusterCIDR,
		"--hostname-override=" + p.NodeName,
		"--bind-address=" + p.NodeIP,
		"--kubeconfig=" + p.Kubeconfig,
		// Leave the conntrack table's size and timeouts to the host: they
		// cannot be set in containers and are the host's business.
		"--conntrack-max-per-core=0",
		"--conntrack-tcp-timeout-established=0",
		"--conntrack-tcp-timeout-close-wait=0",
		"--healthz-bind-address=127.0.0.1:10256",
		"--metrics-bind-address=127.0.0.1:10249",
	}, dashed(p.Args)...)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("flags: %w (check --kube-proxy-arg)", err)
	}
	if err := o.Complete(fs); err != nil {
		return fmt.Errorf("flags: %w (check --kube-proxy-arg)", err)
	}
	if err := o.Validate(); err != nil {
		return fmt.Errorf("flags: %w (check --kube-proxy-arg)", err)
	}
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	ready()
	select {
	case err := <-done:
		if ctx.Err() == nil {
			return fmt.Errorf("kube-proxy stopped: %w", err)
		}
	case <-ctx.Done():
	}
	return nil
}
