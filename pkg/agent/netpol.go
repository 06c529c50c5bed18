package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cloudnativelabs/kube-router/v2/pkg/controllers/netpol"
	"github.com/cloudnativelabs/kube-router/v2/pkg/healthcheck"
	"github.com/cloudnativelabs/kube-router/v2/pkg/options"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/kasa-io/kasa/pkg/component"
	"github.com/kasa-io/kasa/pkg/fileutil"
	"github.com/kasa-io/kasa/pkg/netguard"
)

// NetpolPrograms are the programs kube-router's network policy controller
// runs: it writes its rules with iptables-restore and its address sets
// with ipset.
var NetpolPrograms = []string{"iptables", "iptables-save", "iptables-restore", "ipset"}

// netpolSyncPeriod is how often the controller writes every rule again
// besides the writes that changes cause (kube-router's default).
const netpolSyncPeriod = 5 * time.Minute

// NetworkPolicy runs upstream kube-router's network policy controller in
// this process, as k3s does: it watches Pods, Namespaces and
// NetworkPolicies and keeps, in the filter table, a chain for each pod of
// this node and one for each policy, with ipsets of the pods and blocks
// the policies name. A pod that no policy selects passes unfiltered.
type NetworkPolicy struct {
	NodeName string
	// Kubeconfig is kube-proxy's identity, which rbac.yaml lets read what
	// the controller watches.
	Kubeconfig string
	// ServiceCIDR and NodePortRange (low-high) are the cluster's: the
	// controller lets traffic to them pass to kube-proxy's rules.
	ServiceCIDR   string
	NodePortRange string
	// PolicyNamespaces, when set, is the file where the namespaces that
	// have a policy are kept for the CNI plugin kasa-hold; the pods that
	// plugin holds are let go once two of the controller's writes have
	// named them (releaseHeld).
	PolicyNamespaces string
	Log              *slog.Logger
}

var _ component.Component = (*NetworkPolicy)(nil)

// Name implements component.Component.
func (p *NetworkPolicy) Name() string { return "network-policy" }

// Run implements component.Component. It is ready once the controller
// has begun its first write of the rules.
func (p *NetworkPolicy) Run(ctx context.Context, ready func()) error {
	if err := CheckNetpolPrograms(exec.LookPath); err != nil {
		return err
	}
	client, err := clientFor(p.Kubeconfig)
	if err != nil {
		return err
	}
	// kube-router finds its Node by NODE_NAME first, then by host name.
	if err := os.Setenv("NODE_NAME", p.NodeName); err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	pods := factory.Core().V1().Pods().Informer()
	namespaces := factory.Core().V1().Namespaces().Informer()
	policies := factory.Networking().V1().NetworkPolicies().Informer()
	stop := make(chan struct{})
	// The controller's goroutines; drained closes once they have ended.
	var wg sync.WaitGroup
	drained := make(chan struct{})
	defer func() {
		close(stop)
		factory.Shutdown()
		waitGroup(&wg, 5*time.Second)
		close(drained)
	}()
	factory.Start(stop)
	// Until rbac.yaml is applied the lists are refused; the informers
	// retry.
	if !cache.WaitForCacheSync(ctx.Done(), pods.HasSynced, namespaces.HasSynced, policies.HasSynced) {
		return nil
	}
	cfg := options.NewKubeRouterConfig()
	cfg.EnableIPv4, cfg.EnableIPv6 = true, false
	cfg.ClusterIPCIDRs = []string{p.ServiceCIDR}
	cfg.NodePortRange = p.NodePortRange
	cfg.HostnameOverride = p.NodeName
	cfg.IPTablesSyncPeriod = netpolSyncPeriod
	cfg.MetricsEnabled = false
	iptables, ipsets, err := netpol.NewIPTablesHandlers(cfg)
	if err != nil {
		return fmt.Errorf("network policy: %w", err)
	}
	var ipsetMutex sync.Mutex
	npc, err := netpol.NewNetworkPolicyController(client, cfg, pods, policies, namespaces, &ipsetMutex, iptables, ipsets)
	if err != nil {
		return fmt.Errorf("network policy: %w", err)
	}
	for _, h := range []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{{pods, npc.PodEventHandler}, {namespaces, npc.NamespaceEventHandler}, {policies, npc.NetworkPolicyEventHandler}} {
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			return err
		}
	}
	// The controller reports the start of each write on this channel and
	// blocks until it is read: it is read until the controller has ended.
	health := make(chan *healthcheck.ControllerHeartbeat, 1)
	first := make(chan struct{})
	go func() {
		once := sync.Once{}
		for {
			select {
			case <-drained:
				return
			case <-health:
				once.Do(func() { close(first) })
			}
		}
	}()
	if p.PolicyNamespaces != "" {
		if err := p.keepNamespaces(policies, stop, &wg); err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.releaseHeld(stop, npc.RequestFullSync)
		}()
	}
	wg.Add(1)
	go npc.Run(health, stop, &wg)
	select {
	case <-first:
		ready()
	case <-ctx.Done():
		return nil
	}
	<-ctx.Done()
	return nil
}

// keepNamespaces writes the file PolicyNamespaces now and whenever a
// policy comes or goes, until stop; the file goes with the controller.
func (p *NetworkPolicy) keepNamespaces(policies cache.SharedIndexInformer, stop <-chan struct{}, wg *sync.WaitGroup) error {
	changed := make(chan struct{}, 1)
	kick := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := policies.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: kick, DeleteFunc: kick, UpdateFunc: func(_, o any) { kick(o) },
	}); err != nil {
		return err
	}
	write := func() error {
		var names []string
		for _, key := range policies.GetStore().ListKeys() {
			ns, _, _ := strings.Cut(key, "/")
			names = append(names, ns)
		}
		slices.Sort(names)
		names = slices.Compact(names)
		return fileutil.WriteFile(p.PolicyNamespaces, []byte(strings.Join(append(names, ""), "\n")), 0o644)
	}
	if err := write(); err != nil {
		return err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer os.Remove(p.PolicyNamespaces)
		for {
			select {
			case <-stop:
				return
			case <-changed:
				if err := write(); err != nil {
					p.Log.Warn("cannot write the namespaces with a policy; new pods there are not held", "err", err)
				}
			}
		}
	}()
	return nil
}

// releaseEvery is how often held pods are looked at.
const releaseEvery = 200 * time.Millisecond

// releaseHeld lets go, until stop, each pod address that kasa-hold holds
// once two of the controller's writes have named it. One is not enough:
// a write reads the policies' pods before it lists the node's own, so a
// pod whose address came in between gets its chain without its policies
// until the next write. Each write names a pod's chain anew (its name
// holds the write's version), so a second chain name for the address
// shows a write that began after the first had ended, and that one read
// the policies' pods with the address in them. resync asks for a write
// when a held address is named the first time.
func (p *NetworkPolicy) releaseHeld(stop <-chan struct{}, resync func()) {
	t := time.NewTicker(releaseEvery)
	defer t.Stop()
	first := map[netip.Addr]string{}
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		held, err := netguard.Held()
		if err != nil || len(held) == 0 {
			clear(first)
			continue
		}
		out, err := exec.Command("iptables-save", "-t", "filter").Output()
		if err != nil {
			p.Log.Warn("cannot read the policy rules to let held pods go", "err", err)
			continue
		}
		chains := podChains(string(out))
		var ready []netip.Addr
		asked := false
		for _, a := range held {
			c, ok := chains[a]
			switch {
			case !ok:
			case first[a] == "":
				first[a] = c
				if !asked {
					resync()
					asked = true
				}
			case first[a] != c:
				ready = append(ready, a)
			}
		}
		if err := netguard.Release(ready); err != nil {
			p.Log.Warn("cannot let held pods go", "err", err)
		}
		for a := range first {
			if !slices.Contains(held, a) || slices.Contains(ready, a) {
				delete(first, a)
			}
		}
	}
}

// podChains maps each pod address that kube-router's forward chain sends
// to a pod's own chain, in iptables-save output, to that chain's name.
func podChains(save string) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	for _, line := range strings.Split(save, "\n") {
		if !strings.HasPrefix(line, "-A KUBE-ROUTER-FORWARD ") {
			continue
		}
		f := strings.Fields(line)
		chain := ""
		if i := slices.Index(f, "-j"); i >= 0 && i+1 < len(f) && strings.HasPrefix(f[i+1], "KUBE-POD-FW-") {
			chain = f[i+1]
		}
		if chain == "" {
			continue
		}
		for i := 0; i+1 < len(f); i++ {
			if f[i] != "-d" && f[i] != "-s" {
				continue
			}
			if pfx, err := netip.ParsePrefix(f[i+1]); err == nil && pfx.Bits() == 32 {
				out[pfx.Addr()] = chain
			}
		}
	}
	return out
}

// CheckNetpolPrograms reports the programs of NetpolPrograms that
// lookPath does not find, with what to do.
func CheckNetpolPrograms(lookPath func(string) (string, error)) error {
	var missing []string
	for _, prog := range NetpolPrograms {
		if _, err := lookPath(prog); err != nil {
			missing = append(missing, prog)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("network policy enforcement needs %v, which this host lacks: install them (apt-get install iptables ipset), or start the servers with --disable-network-policy", missing)
}

// waitGroup waits for wg, for d at most.
func waitGroup(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}
