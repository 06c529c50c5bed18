package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/kasa-io/kasa/pkg/settings"

	"github.com/kasa-io/kasa/pkg/addons"
	"github.com/kasa-io/kasa/pkg/secretsencrypt"
	"github.com/kasa-io/kasa/pkg/snapshot"
)

// Defaults shared with k3s, so that a k3s user finds the same numbers.
const (
	DefaultKubeconfig     = "/etc/kasa/kasa.yaml"
	DefaultHTTPSPort      = 6443
	DefaultClusterCIDR    = "10.42.0.0/16"
	DefaultServiceCIDR    = "10.43.0.0/16"
	DefaultClusterDomain  = "cluster.local"
	DefaultNodePortRange  = "30000-32767"
	DefaultKubeconfigMode = "0600"
)

// ServerOptions are the raw values of `kasa server`'s flags.
type ServerOptions struct {
	ConfigFile           string
	DataDir              string
	Token                string
	TokenFile            string
	Server               string
	AgentToken           string
	AgentTokenFile       string
	FlannelBackend       string
	SecretsEncryption    bool
	SecretsProvider      string
	ClusterReset         bool
	ClusterResetRestore  string
	SnapshotCron         string
	SnapshotRetention    int
	SnapshotDir          string
	SnapshotCompress     bool
	DisableSnapshots     bool
	TestCertLifetime     time.Duration
	TestDBCheckInterval  time.Duration
	DatastoreEndpoint    string
	DatastoreCAFile      string
	DatastoreCertFile    string
	DatastoreKeyFile     string
	HTTPSPort            int
	BindAddress          string
	AdvertiseAddress     string
	TLSSANs              []string
	NodeName             string
	NodeIPs              []string
	ClusterCIDR          string
	ServiceCIDR          string
	ClusterDNS           string
	ClusterDomain        string
	NodePortRange        string
	APIServerArgs        []string
	ControllerManagerArg []string
	SchedulerArgs        []string
	WriteKubeconfig      string
	WriteKubeconfigMode  string
	DisableAgent         bool
	DisableNetworkPolicy bool
	Disable              []string
	Debug                bool
	Verbosity            int
	// Agent holds the flags of this machine's node.
	Agent AgentOptions
}

// AddFlags defines the server's flags, with k3s's names, on fs.
func (o *ServerOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&o.ConfigFile, settings.ConfigFlag, "c", settings.DefaultConfigFile, "config file (keys are flag names); files in <config>.d/*.yaml are read after it")
	settings.EnvAlias(fs, settings.ConfigFlag, "KASA_CONFIG_FILE")
	fs.StringVarP(&o.DataDir, "data-dir", "d", settings.DefaultDataDir, "folder for kasa's state")
	fs.StringVarP(&o.Token, "token", "t", "", "shared secret that nodes use to join, of 16 characters or more; set on first start, generated when empty")
	settings.Sensitive(fs, "token")
	fs.StringVar(&o.TokenFile, "token-file", "", "file holding the token")
	fs.StringVarP(&o.Server, "server", "s", "", "a server of the cluster to join, as https://HOST:6443: this server then shares that cluster's --datastore-endpoint, and is refused when the datastore holds no cluster or another one")
	fs.StringVar(&o.AgentToken, "agent-token", "", "shared secret that joins agents only, of 16 characters or more; set on first start (default: agents join with the server token)")
	settings.Sensitive(fs, "agent-token")
	fs.StringVar(&o.FlannelBackend, "flannel-backend", "vxlan", "pod network backend of every node: "+strings.Join(flannelBackends, ", "))
	fs.StringVar(&o.AgentTokenFile, "agent-token-file", "", "file holding the agent token")
	fs.BoolVar(&o.SecretsEncryption, "secrets-encryption", true, "encrypt Secrets at rest, with a key in the server folder (=false writes them in plaintext; keys made before stay, to read)")
	fs.StringVar(&o.SecretsProvider, "secrets-encryption-provider", secretsencrypt.Secretbox, "what encrypts Secrets: "+strings.Join(secretsencrypt.Providers, ", "))
	fs.BoolVar(&o.ClusterReset, "cluster-reset", false, "restore the datastore from --cluster-reset-restore-path before starting (the server's certificates and tokens too)")
	fs.StringVar(&o.ClusterResetRestore, "cluster-reset-restore-path", "", "the snapshot file (kasa db snapshot save) that --cluster-reset restores")
	fs.StringVar(&o.SnapshotCron, "db-snapshot-schedule-cron", "0 */12 * * *", "when the server snapshots its SQLite datastore, in cron's five fields (or six, seconds first)")
	fs.IntVar(&o.SnapshotRetention, "db-snapshot-retention", 5, "how many scheduled snapshots to keep")
	fs.StringVar(&o.SnapshotDir, "db-snapshot-dir", "", "folder of the snapshots (default: <data-dir>/server/db/snapshots)")
	fs.BoolVar(&o.SnapshotCompress, "db-snapshot-compress", false, "gzip the scheduled snapshots")
	fs.BoolVar(&o.DisableSnapshots, "disable-db-snapshots", false, "take no scheduled snapshots")
	fs.DurationVar(&o.TestCertLifetime, "test-cert-lifetime", 0, "for tests only: how long the certificates the server issues live (default a year); they renew when three quarters of a life under 30 days has passed")
	_ = fs.MarkHidden("test-cert-lifetime")
	fs.DurationVar(&o.TestDBCheckInterval, "test-db-check-interval", 0, "for tests only: how often the server checks its SQLite datastore (default 5m)")
	_ = fs.MarkHidden("test-db-check-interval")
	fs.StringVar(&o.DatastoreEndpoint, "datastore-endpoint", "", "kine datastore: empty for SQLite in the data dir, or a mysql:// or postgres:// DSN")
	settings.Sensitive(fs, "datastore-endpoint")
	fs.StringVar(&o.DatastoreCAFile, "datastore-cafile", "", "TLS CA file for the datastore")
	fs.StringVar(&o.DatastoreCertFile, "datastore-certfile", "", "TLS client certificate for the datastore")
	fs.StringVar(&o.DatastoreKeyFile, "datastore-keyfile", "", "TLS client key for the datastore")
	fs.IntVar(&o.HTTPSPort, "https-listen-port", DefaultHTTPSPort, "port of the Kubernetes API")
	fs.StringVar(&o.BindAddress, "bind-address", "0.0.0.0", "address the API server listens on")
	fs.StringVar(&o.AdvertiseAddress, "advertise-address", "", "address the API server advertises to the cluster (default: the node IP)")
	fs.StringSliceVar(&o.TLSSANs, "tls-san", nil, "extra host names or IPs in the API server's certificate")
	fs.StringVar(&o.NodeName, "node-name", "", "node name (default: the host name)")
	fs.StringSliceVar(&o.NodeIPs, "node-ip", nil, "IP address of this node (default: the address of the default route's interface)")
	fs.StringVar(&o.ClusterCIDR, "cluster-cidr", DefaultClusterCIDR, "pod network")
	fs.StringVar(&o.ServiceCIDR, "service-cidr", DefaultServiceCIDR, "service network")
	fs.StringVar(&o.ClusterDNS, "cluster-dns", "", "cluster DNS service IP (default: the 10th address of the service network)")
	fs.StringVar(&o.ClusterDomain, "cluster-domain", DefaultClusterDomain, "cluster domain")
	fs.StringVar(&o.NodePortRange, "service-node-port-range", DefaultNodePortRange, "port range for NodePort services")
	fs.StringArrayVar(&o.APIServerArgs, "kube-apiserver-arg", nil, "extra kube-apiserver flag, as name=value (repeatable)")
	fs.StringArrayVar(&o.ControllerManagerArg, "kube-controller-manager-arg", nil, "extra kube-controller-manager flag, as name=value (repeatable)")
	fs.StringArrayVar(&o.SchedulerArgs, "kube-scheduler-arg", nil, "extra kube-scheduler flag, as name=value (repeatable)")
	fs.StringVarP(&o.WriteKubeconfig, "write-kubeconfig", "o", DefaultKubeconfig, "where to write the admin kubeconfig")
	settings.EnvAlias(fs, "write-kubeconfig", "KASA_KUBECONFIG_OUTPUT")
	fs.StringVar(&o.WriteKubeconfigMode, "write-kubeconfig-mode", DefaultKubeconfigMode, "file mode of the admin kubeconfig, in octal")
	settings.EnvAlias(fs, "write-kubeconfig-mode", "KASA_KUBECONFIG_MODE")
	fs.BoolVar(&o.DisableAgent, "disable-agent", false, "run the control plane only, without a node")
	fs.BoolVar(&o.DisableNetworkPolicy, "disable-network-policy", false, "enforce no NetworkPolicy on any node (they are enforced by default)")
	fs.StringSliceVar(&o.Disable, "disable", nil, "packaged components not to deploy: "+addons.Names())
	fs.BoolVar(&o.Debug, "debug", false, "log at debug level")
	fs.IntVarP(&o.Verbosity, "v", "v", 0, "log verbosity of the Kubernetes components")
	o.Agent.AddFlags(fs)
}

// Server is the validated, typed configuration of `kasa server`.
type Server struct {
	DataDir string
	Token   Secret
	// Server is the cluster's server this one joins (https://host:port),
	// or empty.
	Server     string
	AgentToken Secret
	// FlannelBackend is the pod network's backend for every node.
	FlannelBackend string
	// SecretsEncryption: Secrets are encrypted at rest, by SecretsProvider.
	SecretsEncryption bool
	SecretsProvider   string
	// RestorePath is the snapshot --cluster-reset restores, or empty.
	RestorePath string
	// Snapshots are the scheduled snapshots of the SQLite datastore.
	Snapshots Snapshots
	// CertLifetime is how long the certificates the server issues live
	// (--test-cert-lifetime); zero is pki.LeafLifetime.
	CertLifetime time.Duration
	// DBCheckInterval is how often the SQLite datastore is checked
	// (--test-db-check-interval); zero is the server's default.
	DBCheckInterval     time.Duration
	Datastore           Datastore
	HTTPSPort           int
	BindAddress         netip.Addr
	AdvertiseAddress    netip.Addr
	TLSSANs             []string
	NodeName            string
	NodeIPs             []netip.Addr
	ClusterCIDR         netip.Prefix
	ServiceCIDR         netip.Prefix
	ClusterDNS          netip.Addr
	ClusterDomain       string
	NodePortRange       string
	APIServerArgs       []string
	ControllerArgs      []string
	SchedulerArgs       []string
	WriteKubeconfig     string
	WriteKubeconfigMode os.FileMode
	DisableAgent        bool
	// DisableNetworkPolicy: no node enforces NetworkPolicies.
	DisableNetworkPolicy bool
	Disable              addons.Set
	Debug                bool
	Verbosity            int
	// Agent is this machine's node; nil with --disable-agent.
	Agent *Agent
}

// Snapshots say when the server snapshots its SQLite datastore.
type Snapshots struct {
	Disabled  bool
	Cron      string
	Retention int
	// Dir is the folder of snapshots; empty for the data dir's.
	Dir      string
	Compress bool
}

// Datastore says where kine keeps the cluster's state.
type Datastore struct {
	// Endpoint is kine's DSN; empty means SQLite in the data dir.
	Endpoint Secret
	CAFile   string
	CertFile string
	KeyFile  string
}

// Secret is a string that prints as "<redacted>" in logs and errors.
type Secret string

// String hides the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "<redacted>"
}

// Reveal returns the secret's value, for the one place that needs it.
func (s Secret) Reveal() string { return string(s) }

// Host is what Complete needs to know about the machine.
type Host struct {
	Hostname string
	// DefaultIP is the address of the interface that holds the default route,
	// or an invalid address when there is none.
	DefaultIP netip.Addr
	// ReadFile reads files named by settings (the token file).
	ReadFile func(string) ([]byte, error)
}

// Complete validates the options and turns them into a Server. Each error
// names the setting at fault and what a valid value looks like.
func (o *ServerOptions) Complete(h Host) (*Server, error) {
	s := &Server{
		HTTPSPort:            o.HTTPSPort,
		TLSSANs:              o.TLSSANs,
		ClusterDomain:        o.ClusterDomain,
		NodePortRange:        o.NodePortRange,
		APIServerArgs:        o.APIServerArgs,
		ControllerArgs:       o.ControllerManagerArg,
		SchedulerArgs:        o.SchedulerArgs,
		DisableAgent:         o.DisableAgent,
		DisableNetworkPolicy: o.DisableNetworkPolicy,
		Debug:                o.Debug,
		Verbosity:            o.Verbosity,
		Datastore: Datastore{
			Endpoint: Secret(o.DatastoreEndpoint),
			CAFile:   o.DatastoreCAFile,
			CertFile: o.DatastoreCertFile,
			KeyFile:  o.DatastoreKeyFile,
		},
	}
	var err error
	if s.DataDir, err = settings.AbsPath("--data-dir", o.DataDir); err != nil {
		return nil, err
	}
	if s.WriteKubeconfig, err = settings.AbsPath("--write-kubeconfig", o.WriteKubeconfig); err != nil {
		return nil, err
	}
	mode, err := strconv.ParseUint(o.WriteKubeconfigMode, 8, 32)
	if err != nil || mode > 0o777 {
		return nil, fmt.Errorf("invalid --write-kubeconfig-mode %q: want an octal file mode such as 0600 or 0644", o.WriteKubeconfigMode)
	}
	s.WriteKubeconfigMode = os.FileMode(mode)

	if s.Token, err = readToken("--token", o.Token, o.TokenFile, h); err != nil {
		return nil, err
	}
	if s.AgentToken, err = readToken("--agent-token", o.AgentToken, o.AgentTokenFile, h); err != nil {
		return nil, err
	}
	if o.Server != "" {
		if s.Server, err = parseServerURL(o.Server); err != nil {
			return nil, err
		}
		if o.DatastoreEndpoint == "" {
			return nil, errors.New("--server: servers of one cluster share an external datastore, and this one has SQLite, its own: give the cluster's --datastore-endpoint too")
		}
		if s.Token == "" {
			return nil, errors.New("--server: give the cluster's server token too (--token, --token-file or KASA_TOKEN)")
		}
	}
	if !slices.Contains(flannelBackends, o.FlannelBackend) {
		return nil, fmt.Errorf("invalid --flannel-backend %q: want one of %s", o.FlannelBackend, strings.Join(flannelBackends, ", "))
	}
	s.FlannelBackend = o.FlannelBackend
	if !slices.Contains(secretsencrypt.Providers, o.SecretsProvider) {
		return nil, fmt.Errorf("invalid --secrets-encryption-provider %q: want one of %s", o.SecretsProvider, strings.Join(secretsencrypt.Providers, ", "))
	}
	s.SecretsEncryption, s.SecretsProvider = o.SecretsEncryption, o.SecretsProvider
	if o.TestCertLifetime != 0 && o.TestCertLifetime < 2*time.Minute {
		return nil, fmt.Errorf("invalid --test-cert-lifetime %s: want 2m or more", o.TestCertLifetime)
	}
	s.CertLifetime = o.TestCertLifetime
	if o.TestDBCheckInterval < 0 {
		return nil, fmt.Errorf("invalid --test-db-check-interval %s", o.TestDBCheckInterval)
	}
	s.DBCheckInterval = o.TestDBCheckInterval
	if err := o.completeSnapshots(s); err != nil {
		return nil, err
	}
	if o.HTTPSPort < 1 || o.HTTPSPort > 65535 {
		return nil, fmt.Errorf("invalid --https-listen-port %d: want a port from 1 to 65535", o.HTTPSPort)
	}
	if s.BindAddress, err = parseIP("--bind-address", o.BindAddress); err != nil {
		return nil, err
	}
	for _, ip := range o.NodeIPs {
		a, err := parseIP("--node-ip", ip)
		if err != nil {
			return nil, err
		}
		s.NodeIPs = append(s.NodeIPs, a)
	}
	if len(s.NodeIPs) == 0 && h.DefaultIP.IsValid() {
		s.NodeIPs = []netip.Addr{h.DefaultIP}
	}
	if o.AdvertiseAddress != "" {
		if s.AdvertiseAddress, err = parseIP("--advertise-address", o.AdvertiseAddress); err != nil {
			return nil, err
		}
	} else if len(s.NodeIPs) > 0 {
		s.AdvertiseAddress = s.NodeIPs[0]
	} else {
		s.AdvertiseAddress = netip.MustParseAddr("127.0.0.1")
	}
	s.NodeName = strings.ToLower(o.NodeName)
	if s.NodeName == "" {
		s.NodeName = strings.ToLower(h.Hostname)
	}
	if s.NodeName == "" {
		return nil, errors.New("no node name: the host name is empty, so set --node-name")
	}
	if s.ClusterCIDR, err = parseCIDR("--cluster-cidr", o.ClusterCIDR); err != nil {
		return nil, err
	}
	if s.ServiceCIDR, err = parseCIDR("--service-cidr", o.ServiceCIDR); err != nil {
		return nil, err
	}
	if s.ClusterCIDR.Overlaps(s.ServiceCIDR) {
		return nil, fmt.Errorf("--cluster-cidr %s overlaps --service-cidr %s: pick networks that do not overlap", s.ClusterCIDR, s.ServiceCIDR)
	}
	if o.ClusterDNS == "" {
		s.ClusterDNS = nthAddr(s.ServiceCIDR, 10)
	} else if s.ClusterDNS, err = parseIP("--cluster-dns", o.ClusterDNS); err != nil {
		return nil, err
	}
	if !s.ServiceCIDR.Contains(s.ClusterDNS) {
		return nil, fmt.Errorf("--cluster-dns %s is outside --service-cidr %s", s.ClusterDNS, s.ServiceCIDR)
	}
	if err := checkPortRange(o.NodePortRange); err != nil {
		return nil, err
	}
	for _, flag := range []struct {
		name string
		args []string
	}{{"--kube-apiserver-arg", o.APIServerArgs}, {"--kube-controller-manager-arg", o.ControllerManagerArg}, {"--kube-scheduler-arg", o.SchedulerArgs}} {
		if err := checkPassthrough(flag.name, flag.args); err != nil {
			return nil, err
		}
	}
	s.Disable = addons.NewSet()
	for _, d := range o.Disable {
		a, err := addons.Parse(strings.TrimSpace(d))
		if err != nil {
			return nil, err
		}
		s.Disable.Add(a)
	}
	if !o.DisableAgent {
		if s.Agent, err = o.Agent.Complete(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// readToken reads the token given by flag or by flag-file.
func readToken(flag, token, file string, h Host) (Secret, error) {
	if token != "" && file != "" {
		return "", fmt.Errorf("%s and %s-file are both set: give one of them", flag, flag)
	}
	if file != "" {
		read := h.ReadFile
		if read == nil {
			read = os.ReadFile
		}
		b, err := read(file)
		if err != nil {
			return "", fmt.Errorf("%s-file: %w", flag, err)
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			return "", fmt.Errorf("%s-file %s is empty", flag, file)
		}
	}
	if strings.ContainsAny(token, " \t\n") {
		return "", fmt.Errorf("invalid %s: it contains white space", flag)
	}
	return Secret(token), nil
}

func parseIP(flag, v string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(v))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("invalid %s %q: want an IP address such as 192.168.1.10", flag, v)
	}
	return a.Unmap(), nil
}

func parseCIDR(flag, v string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(v))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid %s %q: want a network in CIDR form such as %s", flag, v, map[string]string{"--cluster-cidr": DefaultClusterCIDR, "--service-cidr": DefaultServiceCIDR}[flag])
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("invalid %s %q: host bits are set; did you mean %s?", flag, v, p.Masked())
	}
	return p, nil
}

func nthAddr(p netip.Prefix, n int) netip.Addr {
	a := p.Addr()
	for range n {
		a = a.Next()
	}
	return a
}

func checkPortRange(r string) error {
	lo, hi, ok := strings.Cut(r, "-")
	l, err1 := strconv.Atoi(lo)
	h, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || l < 1 || h > 65535 || l > h {
		return fmt.Errorf("invalid --service-node-port-range %q: want low-high such as %s", r, DefaultNodePortRange)
	}
	return nil
}

// completeSnapshots validates the snapshot and restore flags into s.
func (o *ServerOptions) completeSnapshots(s *Server) error {
	external := o.DatastoreEndpoint != ""
	switch {
	case o.ClusterReset && o.ClusterResetRestore == "":
		return errors.New("--cluster-reset: give --cluster-reset-restore-path FILE too, the snapshot to restore (kasa's SQLite datastore has no members to reset)")
	case !o.ClusterReset && o.ClusterResetRestore != "":
		return errors.New("--cluster-reset-restore-path: add --cluster-reset, which says to replace this server's datastore with the snapshot")
	case o.ClusterReset && external:
		return errors.New("--cluster-reset: snapshots are of the SQLite datastore, and this server's is --datastore-endpoint: restore that database with its own tools")
	case o.ClusterReset:
		path, err := settings.AbsPath("--cluster-reset-restore-path", o.ClusterResetRestore)
		if err != nil {
			return err
		}
		s.RestorePath = path
	}
	if _, err := snapshot.ParseSchedule(o.SnapshotCron); err != nil {
		return fmt.Errorf("invalid --db-snapshot-schedule-cron %q: %w; want cron's five fields, as \"0 */12 * * *\"", o.SnapshotCron, err)
	}
	if o.SnapshotRetention < 1 {
		return fmt.Errorf("invalid --db-snapshot-retention %d: keep 1 snapshot or more", o.SnapshotRetention)
	}
	s.Snapshots = Snapshots{Disabled: o.DisableSnapshots || external, Cron: o.SnapshotCron, Retention: o.SnapshotRetention, Compress: o.SnapshotCompress}
	if o.SnapshotDir != "" {
		dir, err := settings.AbsPath("--db-snapshot-dir", o.SnapshotDir)
		if err != nil {
			return err
		}
		s.Snapshots.Dir = dir
	}
	return nil
}
