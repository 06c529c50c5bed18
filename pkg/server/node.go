package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/kubernetes/pkg/util/taints"

	"github.com/kasa-io/kasa/pkg/agent"
	"github.com/kasa-io/kasa/pkg/agent/containerd"
	"github.com/kasa-io/kasa/pkg/agent/images"
	"github.com/kasa-io/kasa/pkg/bundle"
	"github.com/kasa-io/kasa/pkg/checkconfig"
	"github.com/kasa-io/kasa/pkg/component"
	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/fileutil"
	"github.com/kasa-io/kasa/pkg/pki"
)

// RunDir holds the node's sockets and volatile state.
const RunDir = "/run/kasa"

// nodePaths is the layout of <data-dir>/agent.
type nodePaths struct{ root string }

func (n nodePaths) join(elem ...string) string {
	return filepath.Join(append([]string{n.root}, elem...)...)
}

// nodeComponents returns this machine's node parts, to run after the control
// plane: containerd, image import, kubelet, the pod network and kube-proxy.
func nodeComponents(cfg *config.Server, p Paths, c *certs, serverURL string, env []string, log *slog.Logger, now time.Time) ([]component.Component, error) {
	a := cfg.Agent
	host := checkconfig.Host{}
	results := checkconfig.Run(host)
	if err := checkconfig.Failed(results); err != nil {
		return nil, err
	}
	for _, r := range results {
		if r.Level == checkconfig.Warn {
			log.Warn("host check", "check", r.Name, "detail", r.Detail, "fix", r.Fix)
		}
	}
	np := nodePaths{root: filepath.Join(cfg.DataDir, "agent")}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	payload, err := bundle.Find(exe)
	if err != nil {
		return nil, err
	}
	bdir, err := payload.Unpack(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	binDir := filepath.Join(bdir, "bin")

	nodeIP := cfg.AdvertiseAddress
	if len(cfg.NodeIPs) > 0 {
		nodeIP = cfg.NodeIPs[0]
	}
	if err := ensureNodeCerts(cfg, np, c, nodeIP, now); err != nil {
		return nil, fmt.Errorf("node certificates: %w", err)
	}
	for _, kc := range []struct{ file, client string }{{"kubelet.kubeconfig", "kubelet"}, {"kube-proxy.kubeconfig", "kube-proxy"}, {"flannel.kubeconfig", "flannel"}, {"local-path.kubeconfig", "local-path"}} {
		if err := writeKubeconfig(np.join(kc.file), 0o600, kubeconfigSpec{
			Server: serverURL, CAFile: p.TLS("ca.crt"),
			CertFile: np.join("tls", "client-"+kc.client+".crt"), KeyFile: np.join("tls", "client-"+kc.client+".key"),
		}); err != nil {
			return nil, err
		}
	}
	client, err := clientFor(p.Cred("admin.kubeconfig"))
	if err != nil {
		return nil, err
	}
	resolv, err := resolvConf(a.ResolvConf)
	if err != nil {
		return nil, err
	}
	taintList, _, err := taints.ParseTaints(a.NodeTaints)
	if err != nil {
		return nil, fmt.Errorf("--node-taint: %w", err)
	}
	if err := agent.SaveSysctls(agent.SysctlStateFile(cfg.DataDir), agent.ChangedSysctls); err != nil {
		return nil, err
	}
	cgroupV1 := host.CgroupV1()       // warned about by the host checks above
	restrictOOM := !hasCapability(24) // CAP_SYS_RESOURCE
	if restrictOOM {
		log.Info("kasa lacks CAP_SYS_RESOURCE here; containerd will not lower oom_score_adj (restrict_oom_score_adj)")
	}

	ctrd := containerd.Config{
		BinDir:              binDir,
		Root:                np.join("containerd"),
		RunDir:              filepath.Join(RunDir, "containerd"),
		ConfigDir:           np.join("etc", "containerd"),
		RegistryDir:         np.join("etc", "containerd", "certs.d"),
		CNIConfDir:          np.join("etc", "cni", "net.d"),
		RestrictOOMScoreAdj: restrictOOM,
		Env:                 env,
		Log:                 log,
		Output:              prefixed(os.Stderr, "containerd: "),
	}
	proc, err := ctrd.Process()
	if err != nil {
		return nil, err
	}
	registries, err := containerd.LoadRegistries(a.PrivateRegistry)
	if err != nil {
		return nil, fmt.Errorf("--private-registry %w", err)
	}
	if err := registries.WriteHosts(ctrd.RegistryDir, a.DisableDefaultRegistryEndpoint); err != nil {
		return nil, err
	}
	// For `kasa crictl`, as k3s writes one too.
	crictlConf := fmt.Sprintf("runtime-endpoint: %s\nimage-endpoint: %s\ntimeout: 10\n", ctrd.Endpoint(), ctrd.Endpoint())
	if err := fileutil.WriteFile(np.join("etc", "crictl.yaml"), []byte(crictlConf), 0o644); err != nil {
		return nil, err
	}
	node := cfg.NodeName
	iface := a.FlannelIface
	if iface == "" {
		iface = nodeIP.String()
	}
	var network []component.Component
	if a.FlannelBackend != "none" {
		network = append(network, &agent.Flannel{
			NodeName:    node,
			Kubeconfig:  np.join("flannel.kubeconfig"),
			ClusterCIDR: cfg.ClusterCIDR.String(),
			Backend:     a.FlannelBackend,
			Iface:       iface,
			RunDir:      filepath.Join(RunDir, "flannel"),
			ConfDir:     ctrd.CNIConfDir,
			IPAMDir:     np.join("cni", "networks"),
			Sysctl:      agent.WriteSysctl,
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
		proc,
		&images.Loader{
			Importer: images.Importer{Ctr: filepath.Join(binDir, "ctr"), Socket: ctrd.Socket()},
			Dirs:     []string{filepath.Join(bdir, "images"), np.join("images")},
			Log:      log.With("component", "images"),
		},
		&agent.Kubelet{Config: agent.KubeletConfig{
			NodeName:      node,
			NodeIP:        nodeIP.String(),
			RootDir:       np.join("kubelet"),
			ConfigFile:    np.join("etc", "kubelet.yaml"),
			Kubeconfig:    np.join("kubelet.kubeconfig"),
			ClientCA:      p.TLS("ca.crt"),
			ServingCrt:    np.join("tls", "serving-kubelet.crt"),
			ServingKey:    np.join("tls", "serving-kubelet.key"),
			RuntimeSock:   ctrd.Socket(),
			ClusterDNS:    cfg.ClusterDNS.String(),
			ClusterDomain: cfg.ClusterDomain,
			ResolvConf:    resolv,
			CgroupV1:      cgroupV1,
			Labels:        a.NodeLabels,
			Taints:        taintList,
			Args:          a.KubeletArgs,
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
		&agent.KubeProxy{
			NodeName:    node,
			NodeIP:      nodeIP.String(),
			ClusterCIDR: cfg.ClusterCIDR.String(),
			Kubeconfig:  np.join("kube-proxy.kubeconfig"),
			Args:        a.KubeProxyArgs,
		},
	}
	if !slices.Contains(cfg.Disable, "local-storage") {
		storage := a.LocalStoragePath
		if storage == "" {
			storage = filepath.Join(cfg.DataDir, "storage")
		}
		lpClient, err := clientFor(np.join("local-path.kubeconfig"))
		if err != nil {
			return nil, err
		}
		components = append(components, &agent.LocalPath{NodeName: node, Dir: storage, Client: lpClient})
	}
	// The pod network comes after the kubelet (which registers the node that
	// flannel leases for) and before kube-proxy.
	return slices.Insert(components, 3, network...), nil
}

// ensureNodeCerts makes the kubelet's client and serving certificates and
// kube-proxy's client certificate for this machine's node.
func ensureNodeCerts(cfg *config.Server, np nodePaths, c *certs, nodeIP netip.Addr, now time.Time) error {
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.IP(nodeIP.AsSlice())}
	for _, a := range cfg.NodeIPs {
		ips = append(ips, net.IP(a.AsSlice()))
	}
	leaves := []pki.Leaf{
		{CommonName: "system:node:" + cfg.NodeName, Organization: []string{"system:nodes"}, Client: true,
			CertFile: np.join("tls", "client-kubelet.crt"), KeyFile: np.join("tls", "client-kubelet.key")},
		{CommonName: cfg.NodeName, Server: true, DNSNames: []string{cfg.NodeName, "localhost"}, IPs: ips,
			CertFile: np.join("tls", "serving-kubelet.crt"), KeyFile: np.join("tls", "serving-kubelet.key")},
		{CommonName: "system:kube-proxy", Client: true,
			CertFile: np.join("tls", "client-kube-proxy.crt"), KeyFile: np.join("tls", "client-kube-proxy.key")},
		{CommonName: "system:kasa-flannel", Client: true,
			CertFile: np.join("tls", "client-flannel.crt"), KeyFile: np.join("tls", "client-flannel.key")},
		{CommonName: "system:kasa-local-path", Client: true,
			CertFile: np.join("tls", "client-local-path.crt"), KeyFile: np.join("tls", "client-local-path.key")},
	}
	for _, l := range leaves {
		if _, err := c.CA.Ensure(l, now); err != nil {
			return err
		}
	}
	return nil
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
