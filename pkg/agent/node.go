package agent

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/kubernetes/pkg/util/taints"

	"github.com/kasa-io/kasa/pkg/agent/containerd"
	"github.com/kasa-io/kasa/pkg/agent/images"
	"github.com/kasa-io/kasa/pkg/bundle"
	"github.com/kasa-io/kasa/pkg/checkconfig"
	"github.com/kasa-io/kasa/pkg/component"
	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/datadir"
	"github.com/kasa-io/kasa/pkg/fileutil"
	"github.com/kasa-io/kasa/pkg/join"
	"github.com/kasa-io/kasa/pkg/kubeconfig"
	"github.com/kasa-io/kasa/pkg/netguard"
	"github.com/kasa-io/kasa/pkg/sysctl"
)

// ErrNodeRunning is returned when another kasa node runs on this machine.
var ErrNodeRunning = errors.New("a kasa node already runs on this machine")

// LockNode takes the machine-wide lock of a node: one kasa node per
// machine, since a node owns the kubelet's ports, /run/kasa and the pod
// network. what says how to run this command without a node, for the
// message when another node holds the lock.
func LockNode(what string) (*fileutil.Lock, error) {
	file := datadir.MachineRun().NodeLock()
	return fileutil.LockFile(file, func(err error) error {
		return fmt.Errorf("%s is not usable: %w", filepath.Dir(file), err)
	}, func(pid string) error {
		return fmt.Errorf("%w (pid %s): stop it first (kasa killall)%s", ErrNodeRunning, pid, what)
	})
}

// Clients are the node's client identities: each has client-<name>.crt and
// .key in the node's TLS folder and a <name>.kubeconfig. flannel and the
// local-path volumes use the kubelet's: they act as the node.
var Clients = []string{"kubelet", "kube-proxy"}

// retiredClients are client identities of earlier kasa versions, shared by
// every node; their files are removed at start (removeRetired).
var retiredClients = []string{"flannel", "local-path"}

// removeRetired removes the certificates, keys and kubeconfigs of
// retiredClients, which a node that an earlier kasa joined has and nothing
// uses any more.
func removeRetired(np datadir.Agent) error {
	for _, c := range retiredClients {
		for _, f := range []string{np.TLS("client-" + c + ".crt"), np.TLS("client-" + c + ".key"), np.Kubeconfig(c)} {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("removing a file of an earlier kasa: %w", err)
			}
		}
	}
	return nil
}

// Node is what a machine's node parts need to run.
type Node struct {
	DataDir string
	Name    string
	IP      netip.Addr
	Agent   *config.Agent
	// ServerURL is where the node's clients reach the API server: the
	// server's own address on a server, the local load balancer on an agent.
	ServerURL string
	// CAFile is the server CA: the node verifies the API servers with it.
	CAFile string
	// ClientCAFile is the client CA: the kubelet verifies the API server's
	// client certificate with it.
	ClientCAFile string
	// Cluster are the cluster-wide settings (pod network, DNS, flannel
	// backend, whether local-path runs): the server's own, or those its
	// join answered with.
	Cluster join.Cluster
	Env     []string
	Log     *slog.Logger
}

// Start is the start of a machine's node. Its Steps prepare the machine
// and the node's files, in order (the lifecycle's init phase); once they
// have run, Components gives the node's parts.
type Start struct {
	n      Node
	np     datadir.Agent
	bundle string // the unpacked bundle
	client kubernetes.Interface
	resolv string
	taints []corev1.Taint
	// storage is the local-path volumes' folder, "" when they do not run.
	storage  string
	cgroupV1 bool
	ctrd     containerd.Config
	proc     component.Component
}

// NewStart returns the start of node n; the certificates must be in place.
func NewStart(n Node) *Start {
	return &Start{n: n, np: datadir.New(n.DataDir).Agent()}
}

// Steps are what the node does before its parts start, in order.
func (s *Start) Steps() []component.Step {
	return []component.Step{
		{Name: "host checks", Run: s.checkHost},
		{Name: "unpack bundle", Run: s.unpack},
		{Name: "node kubeconfigs", Run: s.kubeconfigs},
		{Name: "node settings", Run: s.settings},
		{Name: "kernel settings", Run: s.kernel},
		{Name: "containerd config", Run: s.containerd},
		{Name: "registries", Run: s.registries},
		{Name: "crictl config", Run: s.crictl},
	}
}

// checkHost stops the start on a failed host check and logs the warnings.
func (s *Start) checkHost(context.Context) error {
	host := checkconfig.Host{NFTables: netguard.Available}
	results := checkconfig.Run(host)
	if err := checkconfig.Failed(results); err != nil {
		return err
	}
	for _, r := range results {
		if r.Level == checkconfig.Warn {
			s.n.Log.Warn("host check", "check", r.Name, "detail", r.Detail, "fix", r.Fix)
		}
	}
	s.cgroupV1 = host.CgroupV1() // warned about by the checks above
	return nil
}

// unpack finds the binaries and images of kasa's bundle, unpacking them
// from kasa's executable when it carries them.
func (s *Start) unpack(context.Context) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	s.bundle, err = bundle.Locate(exe, s.n.DataDir)
	return err
}

// kubeconfigs writes the node's clients' kubeconfigs (removing those an
// earlier kasa used) and makes the client of the node's own identity, which
// the readiness checks, flannel and the local-path volumes use.
func (s *Start) kubeconfigs(context.Context) error {
	if err := removeRetired(s.np); err != nil {
		return err
	}
	for _, c := range Clients {
		if err := kubeconfig.Write(s.np.Kubeconfig(c), 0o600, kubeconfig.Spec{
			Server: s.n.ServerURL, CAFile: s.n.CAFile,
			CertFile: s.np.TLS("client-" + c + ".crt"), KeyFile: s.np.TLS("client-" + c + ".key"),
		}); err != nil {
			return err
		}
	}
	var err error
	s.client, err = clientFor(s.np.Kubeconfig("kubelet"))
	return err
}

// settings checks the node's own settings: the pods' resolv.conf, the
// taints and the local-path volumes' folder.
func (s *Start) settings(context.Context) error {
	a := s.n.Agent
	var err error
	if s.resolv, err = resolvConf(a.ResolvConf); err != nil {
		return err
	}
	if s.taints, _, err = taints.ParseTaints(a.NodeTaints); err != nil {
		return fmt.Errorf("--node-taint: %w", err)
	}
	if s.n.Cluster.LocalStorage {
		storage := a.LocalStoragePath
		if storage == "" {
			storage = datadir.New(s.n.DataDir).Storage()
		}
		// A volume's host path must be absolute (rbac.yaml's policy).
		if s.storage, err = filepath.Abs(storage); err != nil {
			return err
		}
	}
	return nil
}

// kernel records the kernel settings the node will change, for killall to
// restore, and checks them against the kubelet's wants under
// --protect-kernel-defaults.
func (s *Start) kernel(context.Context) error {
	if err := sysctl.Save(s.np.SysctlsBefore(), sysctl.Changed, sysctl.Read); err != nil {
		return err
	}
	if s.n.Agent.ProtectKernelDefaults {
		return CheckKernelDefaults(sysctl.Read)
	}
	return nil
}

// containerd writes containerd's configuration.
func (s *Start) containerd(context.Context) error {
	restrictOOM := !hasCapability(24) // CAP_SYS_RESOURCE
	if restrictOOM {
		s.n.Log.Info("kasa lacks CAP_SYS_RESOURCE here; containerd will not lower oom_score_adj (restrict_oom_score_adj)")
	}
	run := datadir.MachineRun()
	s.ctrd = containerd.Config{
		BinDir:              filepath.Join(s.bundle, "bin"),
		Root:                s.np.Containerd(),
		RunDir:              run.Containerd(),
		ConfigDir:           s.np.ContainerdConfig(),
		RegistryDir:         s.np.RegistryHosts(),
		CNIConfDir:          s.np.CNIConfig(),
		RestrictOOMScoreAdj: restrictOOM,
		Env:                 withGOGC(s.n.Env),
		Log:                 s.n.Log,
		Output:              prefixed(os.Stderr, "containerd: "),
	}
	var err error
	s.proc, err = s.ctrd.Process()
	return err
}

// registries writes containerd's registry hosts from --private-registry.
func (s *Start) registries(context.Context) error {
	registries, err := containerd.LoadRegistries(s.n.Agent.PrivateRegistry)
	if err != nil {
		return fmt.Errorf("--private-registry %w", err)
	}
	return registries.WriteHosts(s.ctrd.RegistryDir, s.n.Agent.DisableDefaultRegistryEndpoint)
}

// crictl writes crictl.yaml for `kasa crictl`, as k3s writes one too.
func (s *Start) crictl(context.Context) error {
	conf := fmt.Sprintf("runtime-endpoint: %s\nimage-endpoint: %s\ntimeout: 10\n", s.ctrd.Endpoint(), s.ctrd.Endpoint())
	return fileutil.WriteFile(s.np.CrictlConfig(), []byte(conf), 0o644)
}

// Components returns this machine's node parts, in their start order:
// containerd, image import, kubelet, the pod network, kube-proxy and the
// local-path volumes. Steps must have run.
func (s *Start) Components() []component.Component {
	n, a, np, client := s.n, s.n.Agent, s.np, s.client
	node, nodeIP := n.Name, n.IP
	iface := a.FlannelIface
	if iface == "" {
		iface = nodeIP.String()
	}
	// New pods of namespaces with a policy are held until their policies
	// are in place, on kasa's own pod network.
	policyNamespaces := ""
	if !n.Cluster.DisableNetworkPolicy && n.Cluster.FlannelBackend != "none" {
		policyNamespaces = datadir.MachineRun().PolicyNamespaces()
	}
	var network []component.Component
	if n.Cluster.FlannelBackend != "none" {
		network = append(network, &Flannel{
			PolicyNamespaces: policyNamespaces,
			NodeName:         node,
			Kubeconfig:       np.Kubeconfig("kubelet"),
			ClusterCIDR:      n.Cluster.ClusterCIDR,
			Backend:          n.Cluster.FlannelBackend,
			Iface:            iface,
			RunDir:           datadir.MachineRun().Flannel(),
			ConfDir:          s.ctrd.CNIConfDir,
			IPAMDir:          np.CNINetworks(),
			Sysctl:           sysctl.Write,
			PodCIDR: func(ctx context.Context) error {
				n, err := client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
				if err != nil {
					return err
				}
				if n.Spec.PodCIDR == "" {
					return errors.New("no pod CIDR yet")
				}
				return nil
			},
		})
	}
	components := []component.Component{
		s.proc,
		&images.Loader{
			Importer: images.Importer{Ctr: filepath.Join(s.bundle, "bin", "ctr"), Socket: s.ctrd.Socket()},
			Dirs:     []string{filepath.Join(s.bundle, "images")},
			Inbox:    np.Images(),
			Log:      n.Log.With("component", "images"),
		},
		&Kubelet{Config: KubeletConfig{
			NodeName:      node,
			NodeIP:        nodeIP.String(),
			RootDir:       np.Kubelet(),
			ConfigFile:    np.KubeletConfig(),
			Kubeconfig:    np.Kubeconfig("kubelet"),
			ClientCA:      n.ClientCAFile,
			ServingCrt:    np.TLS("serving-kubelet.crt"),
			ServingKey:    np.TLS("serving-kubelet.key"),
			RuntimeSock:   s.ctrd.Socket(),
			ClusterDNS:    n.Cluster.ClusterDNS,
			ClusterDomain: n.Cluster.ClusterDomain,
			ResolvConf:    s.resolv,
			CgroupV1:      s.cgroupV1,
			Labels:        a.NodeLabels,
			Taints:        s.taints,
			Args:          a.KubeletArgs,
			// kasa's flag; a --kubelet-arg of the same name sets it too.
			ProtectKernelDefaults: a.ProtectKernelDefaults,
			Ready: func(ctx context.Context) error {
				n, err := client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
				if err != nil {
					return err
				}
				if len(n.Status.Addresses) == 0 {
					return errors.New("node has no addresses yet")
				}
				return nil
			},
		}},
		&KubeProxy{
			NodeName:    node,
			NodeIP:      nodeIP.String(),
			ClusterCIDR: n.Cluster.ClusterCIDR,
			Kubeconfig:  np.Kubeconfig("kube-proxy"),
			Args:        a.KubeProxyArgs,
		},
	}
	guard := &netguard.Guard{ServiceCIDR: mustPrefix(n.Cluster.ServiceCIDR), Hold: policyNamespaces != "",
		Log: n.Log.With("component", "network-guard")}
	if n.Cluster.FlannelBackend != "none" {
		guard.ClusterCIDR = mustPrefix(n.Cluster.ClusterCIDR)
	}
	network = append(network, guard)
	if !n.Cluster.DisableNetworkPolicy {
		network = append(network, &NetworkPolicy{
			NodeName:         node,
			Kubeconfig:       np.Kubeconfig("kube-proxy"),
			ServiceCIDR:      n.Cluster.ServiceCIDR,
			NodePortRange:    cmp.Or(n.Cluster.NodePortRange, config.DefaultNodePortRange),
			PolicyNamespaces: policyNamespaces,
			Log:              n.Log.With("component", "network-policy"),
		})
	}
	if s.storage != "" {
		components = append(components, &LocalPath{NodeName: node, Dir: s.storage, Client: client})
	}
	// The pod network, its guard and the policies come after the kubelet
	// (which registers the node that flannel leases for) and before
	// kube-proxy.
	return slices.Insert(components, 3, network...)
}

// mustPrefix parses a network of the cluster's settings, which the server
// validated; an invalid one is the zero Prefix.
func mustPrefix(s string) netip.Prefix {
	p, _ := netip.ParsePrefix(s)
	return p.Masked()
}

func clientFor(kubeconfig string) (kubernetes.Interface, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(rc)
}

// resolvConf picks the resolv.conf for pods: the one given, else the
// host's unless it names loopback servers (which pods cannot reach), else
// systemd-resolved's list of upstream servers.
func resolvConf(given string) (string, error) {
	if given != "" {
		if !exists(given) {
			return "", fmt.Errorf("--resolv-conf %s does not exist", given)
		}
		return given, nil
	}
	for _, f := range []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"} {
		if exists(f) && !loopbackServers(f) {
			return f, nil
		}
	}
	return "", errors.New("the host's resolv.conf names only loopback DNS servers, which pods cannot reach: give a file with --resolv-conf")
}

func loopbackServers(file string) bool {
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			if a, err := netip.ParseAddr(fields[1]); err == nil && a.IsLoopback() {
				return true
			}
		}
	}
	return false
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// hasCapability reports whether this process has capability bit n.
func hasCapability(n uint) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			var caps uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%x", &caps); err != nil {
				return false
			}
			return caps&(1<<n) != 0
		}
	}
	return false
}

// prefixed writes each line of a child's output with a prefix.
func prefixed(w io.Writer, prefix string) io.Writer {
	pr, pw := io.Pipe()
	go func() {
		s := bufio.NewScanner(pr)
		s.Buffer(make([]byte, 64*1024), 1024*1024)
		for s.Scan() {
			fmt.Fprintln(w, prefix+s.Text())
		}
	}()
	return pw
}

// GCPercent is the GOGC of the agent process and of containerd: their live
// heaps are small (tens of MiB) and their allocation rates low at rest, so
// collecting at 50% growth instead of Go's 100% costs little CPU and
// keeps about a third less garbage resident (docs/benchmarks.md).
const GCPercent = 50

// withGOGC adds GOGC to a child's environment unless the user set one.
func withGOGC(env []string) []string {
	for _, kv := range env {
		if strings.HasPrefix(kv, "GOGC=") {
			return env
		}
	}
	return append(slices.Clone(env), fmt.Sprintf("GOGC=%d", GCPercent))
}
