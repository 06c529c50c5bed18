package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kasa-io/kasa/pkg/component"
	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/datadir"
	"github.com/kasa-io/kasa/pkg/join"
)

// nodeIP is this server's node address: the first --node-ip, else the
// advertised address.
func nodeIP(cfg *config.Server) netip.Addr {
	if len(cfg.NodeIPs) > 0 {
		return cfg.NodeIPs[0]
	}
	return cfg.AdvertiseAddress
}

// ControlPlaneLabel marks a server's node, as kubeadm and k3s do; kubectl
// shows it under ROLES.
const ControlPlaneLabel = "node-role.kubernetes.io/control-plane"

// nodeRole labels this server's node once the kubelet has registered it
// (the kubelet may not set node-role labels on itself).
func nodeRole(c kubernetes.Interface, name string) component.Component {
	return component.Func{ComponentName: "node-role", RunFunc: func(ctx context.Context, ready func()) error {
		patch := []byte(`{"metadata":{"labels":{"` + ControlPlaneLabel + `":"true"}}}`)
		err := component.PollReady(ctx, time.Second, func(ctx context.Context) error {
			_, err := c.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
			return err
		}, nil)
		if err != nil || ctx.Err() != nil {
			return err
		}
		ready()
		<-ctx.Done()
		return nil
	}}
}

// ensureNodeCerts makes this machine's node certificates, as the join
// endpoint makes an agent's.
func ensureNodeCerts(cfg *config.Server, np datadir.Agent, c *certs, now time.Time, log *slog.Logger) error {
	var ips []net.IP
	for _, a := range append(cfg.NodeIPs, cfg.AdvertiseAddress) {
		ips = append(ips, net.IP(a.AsSlice()))
	}
	for _, l := range join.NodeCerts(cfg.NodeName, ips) {
		l.CertFile, l.KeyFile = np.TLS(l.CertFile), np.TLS(l.KeyFile)
		ca := c.Client
		if l.Server {
			ca = c.Kubelet
		}
		wrote, err := ca.Ensure(l, now)
		if err != nil {
			return fmt.Errorf("node certificate %s: %w", l.CertFile, err)
		}
		if wrote {
			log.Info("wrote certificate", "file", l.CertFile, "cn", l.CommonName, "expires", expiry(l.CertFile))
		}
	}
	return nil
}
