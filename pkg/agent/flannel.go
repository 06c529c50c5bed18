package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/flannel-io/flannel/pkg/backend"
	_ "github.com/flannel-io/flannel/pkg/backend/hostgw" // registers host-gw
	_ "github.com/flannel-io/flannel/pkg/backend/vxlan"  // registers vxlan
	"github.com/flannel-io/flannel/pkg/ip"
	"github.com/flannel-io/flannel/pkg/ipmatch"
	"github.com/flannel-io/flannel/pkg/subnet/kube"
	"github.com/flannel-io/flannel/pkg/trafficmngr/iptables"

	"github.com/kasa-io/kasa/pkg/component"
	"github.com/kasa-io/kasa/pkg/fileutil"
)

// Flannel runs upstream flannel in this process with the Kubernetes subnet
// manager: the node's pod CIDR is its lease, the backend (vxlan or host-gw)
// carries pod traffic between nodes, and flannel keeps the masquerade and
// forward rules. kasa then writes the node's CNI configuration for that
// subnet: the upstream bridge, host-local and portmap plugins.
type Flannel struct {
	NodeName string
	// Kubeconfig is the node's own identity (the kubelet's): flannel reads
	// every Node and patches its own, which NodeRestriction allows and no
	// more.
	Kubeconfig  string
	ClusterCIDR string
	Backend     string
	// Iface names the interface (or its IP) that carries traffic between nodes.
	Iface string
	// RunDir receives net-conf.json and subnet.env.
	RunDir  string
	ConfDir string // CNI configuration folder
	IPAMDir string
	Sysctl  func(path, value string) error
	// PolicyNamespaces, when set, chains kasa-hold in the CNI
	// configuration (see Conflist).
	PolicyNamespaces string
	// PodCIDR reports an error until the controller manager has given the
	// node its pod CIDR, which flannel takes as its lease.
	PodCIDR func(ctx context.Context) error
}

var _ component.Component = (*Flannel)(nil)

// Name implements component.Component.
func (f *Flannel) Name() string { return "flannel" }

// Run implements component.Component.
func (f *Flannel) Run(ctx context.Context, ready func()) error {
	for _, s := range [][2]string{
		{"net/ipv4/ip_forward", "1"},
		{"net/bridge/bridge-nf-call-iptables", "1"},
		{"net/bridge/bridge-nf-call-ip6tables", "1"},
	} {
		if err := f.Sysctl(s[0], s[1]); err != nil {
			return fmt.Errorf("kernel setting %s: %w (see kasa check-config)", s[0], err)
		}
	}
	netConf, err := json.Marshal(map[string]any{
		"Network":    f.ClusterCIDR,
		"EnableIPv4": true,
		"Backend":    map[string]string{"Type": f.Backend},
	})
	if err != nil {
		return err
	}
	netConfFile := filepath.Join(f.RunDir, "net-conf.json")
	if err := fileutil.WriteFile(netConfFile, netConf, 0o644); err != nil {
		return err
	}
	// Upstream's Kubernetes subnet manager learns its node's name from the
	// environment only.
	if err := os.Setenv("NODE_NAME", f.NodeName); err != nil {
		return err
	}
	sm, err := kube.NewSubnetManager(ctx, "", f.Kubeconfig, "flannel.alpha.coreos.com", netConfFile, false)
	if err != nil {
		return err
	}
	config, err := sm.GetNetworkConfig(ctx)
	if err != nil {
		return err
	}
	stack, err := ipmatch.GetIPFamily(config.EnableIPv4, config.EnableIPv6)
	if err != nil {
		return err
	}
	ext, err := ipmatch.LookupExtIface(f.Iface, "", "", stack, ipmatch.PublicIPOpts{})
	if err != nil {
		return fmt.Errorf("interface %q: %w (set --flannel-iface)", f.Iface, err)
	}
	be, err := backend.NewManager(ctx, sm, ext).GetBackend(config.BackendType)
	if err != nil {
		return err
	}
	if err := pollReady(ctx, f.PodCIDR, nil); err != nil || ctx.Err() != nil {
		return err
	}
	var wg sync.WaitGroup
	bn, err := be.RegisterNetwork(ctx, &wg, config)
	if err != nil {
		return fmt.Errorf("%s backend: %w", config.BackendType, err)
	}
	tm := &iptables.IPTablesManager{}
	if err := tm.Init(ctx); err != nil {
		return err
	}
	if err := tm.SetupAndEnsureMasqRules(ctx, config.Network, ip.IP4Net{}, ip.IP4Net{},
		config.IPv6Network, ip.IP6Net{}, ip.IP6Net{}, bn.Lease(), 60, false); err != nil {
		return err
	}
	tm.SetupAndEnsureForwardRules(ctx, config.Network, config.IPv6Network, 60)
	if err := sm.HandleSubnetFile(filepath.Join(f.RunDir, "subnet.env"), config, true,
		bn.Lease().Subnet, bn.Lease().IPv6Subnet, bn.MTU()); err != nil {
		return err
	}
	conf, err := Conflist(bn.Lease().Subnet.String(), f.IPAMDir, bn.MTU(), f.PolicyNamespaces)
	if err != nil {
		return err
	}
	if err := fileutil.WriteFile(filepath.Join(f.ConfDir, ConflistName), conf, 0o644); err != nil {
		return err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		bn.Run(ctx)
	}()
	if err := sm.CompleteLease(ctx, bn.Lease(), &wg); err != nil {
		return err
	}
	ready()
	<-ctx.Done()
	waitGroup(&wg, 5*time.Second)
	return nil
}
