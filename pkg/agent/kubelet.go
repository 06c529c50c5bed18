package agent

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	kubeletapp "k8s.io/kubernetes/cmd/kubelet/app"
	kubeletoptions "k8s.io/kubernetes/cmd/kubelet/app/options"
	kubeletconfig "k8s.io/kubernetes/pkg/kubelet/apis/config"
	kubeletvalidation "k8s.io/kubernetes/pkg/kubelet/apis/config/validation"
	"k8s.io/kubernetes/pkg/kubelet/kubeletconfig/configfiles"
	utilfs "k8s.io/kubernetes/pkg/util/filesystem"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/kasa-io/kasa/pkg/component"
	"github.com/kasa-io/kasa/pkg/fileutil"
	"github.com/kasa-io/kasa/pkg/pki"
)

// KubeletConfig is what kasa decides about its node's kubelet.
type KubeletConfig struct {
	NodeName      string
	NodeIP        string
	RootDir       string // <data-dir>/agent/kubelet
	ConfigFile    string // written at start
	Kubeconfig    string
	ClientCA      string
	ServingCrt    string
	ServingKey    string
	RuntimeSock   string
	ClusterDNS    string
	ClusterDomain string
	ResolvConf    string
	CgroupV1      bool
	// ProtectKernelDefaults: the kubelet leaves the kernel settings it
	// tunes alone and fails when one differs (CheckKernelDefaults first).
	ProtectKernelDefaults bool
	Labels                map[string]string
	Taints                []v1.Taint
	// Args are the user's --kubelet-arg flags, applied over the file.
	Args []string
	// Ready reports whether the node object exists (the kubelet has
	// registered it).
	Ready func(ctx context.Context) error
}

// Kubelet runs the upstream kubelet in this process. It cannot be restarted
// in the same process: upstream leaves goroutines running after it stops.
type Kubelet struct {
	Config KubeletConfig
}

var _ component.Component = (*Kubelet)(nil)

// Name implements component.Component.
func (k *Kubelet) Name() string { return "kubelet" }

// evictionHard is the kubelet's hard eviction thresholds on every node
// (--kubelet-arg=eviction-hard=... replaces them all): a new map each
// time, as the kubelet's flags write into it.
func evictionHard() map[string]string {
	return map[string]string{
		"memory.available":   "100Mi",
		"nodefs.available":   "5%",
		"nodefs.inodesFree":  "5%",
		"imagefs.available":  "5%",
		"imagefs.inodesFree": "5%",
	}
}

// Configuration returns the KubeletConfiguration kasa writes.
func (c KubeletConfig) Configuration() *kubeletv1beta1.KubeletConfiguration {
	kc := &kubeletv1beta1.KubeletConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "kubelet.config.k8s.io/v1beta1", Kind: "KubeletConfiguration"},
		Authentication: kubeletv1beta1.KubeletAuthentication{
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: ptr.To(false)},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: ptr.To(true)},
			X509:      kubeletv1beta1.KubeletX509Authentication{ClientCAFile: c.ClientCA},
		},
		Authorization:            kubeletv1beta1.KubeletAuthorization{Mode: kubeletv1beta1.KubeletAuthorizationModeWebhook},
		CgroupDriver:             "cgroupfs",
		ClusterDNS:               []string{c.ClusterDNS},
		ClusterDomain:            c.ClusterDomain,
		ContainerRuntimeEndpoint: "unix://" + c.RuntimeSock,
		ResolverConfig:           ptr.To(c.ResolvConf),
		TLSCertFile:              c.ServingCrt,
		TLSPrivateKeyFile:        c.ServingKey,
		TLSMinVersion:            pki.TLSMinVersion,
		TLSCipherSuites:          pki.CipherSuiteNames(),
		ProtectKernelDefaults:    c.ProtectKernelDefaults,
		HealthzBindAddress:       "127.0.0.1",
		ReadOnlyPort:             0,
		SerializeImagePulls:      ptr.To(false),
		RegisterWithTaints:       c.Taints,
		// Images come from archives and mirrors; never garbage-collect
		// below what a small node needs.
		ImageGCHighThresholdPercent: ptr.To[int32](90),
		ImageGCLowThresholdPercent:  ptr.To[int32](80),
		// Small disks, as k3s sizes them: upstream's 10% (nodefs) and
		// 15% (imagefs) free are gigabytes on a home server's disk, and a
		// node under disk pressure takes no pods at all.
		EvictionHard:           evictionHard(),
		EvictionMinimumReclaim: map[string]string{"imagefs.available": "10%", "nodefs.available": "10%"},
	}
	if c.CgroupV1 {
		kc.FailCgroupV1 = ptr.To(false)
	}
	return kc
}

// load writes kasa's configuration file and reads it back as the kubelet
// would, with the user's --kubelet-arg flags over it.
func (c KubeletConfig) load(ctx context.Context) (*kubeletoptions.KubeletFlags, *kubeletconfig.KubeletConfiguration, error) {
	data, err := yaml.Marshal(c.Configuration())
	if err != nil {
		return nil, nil, err
	}
	if err := fileutil.WriteFile(c.ConfigFile, data, 0o600); err != nil {
		return nil, nil, err
	}
	loader, err := configfiles.NewFsLoader(&utilfs.DefaultFs{}, c.ConfigFile)
	if err != nil {
		return nil, nil, err
	}
	kc, err := loader.Load(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", c.ConfigFile, err)
	}

	flags := kubeletoptions.NewKubeletFlags()
	flags.KubeConfig = c.Kubeconfig
	flags.HostnameOverride = c.NodeName
	flags.NodeIP = c.NodeIP
	flags.RootDirectory = c.RootDir
	flags.CertDirectory = filepath.Join(c.RootDir, "pki")
	flags.KubeletConfigFile = c.ConfigFile
	for key, v := range c.Labels {
		flags.NodeLabels[key] = v
	}
	// The user's flags win over kasa's file, as they would over any file.
	fs := pflag.NewFlagSet("kubelet", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	flags.AddFlags(fs)
	kubeletoptions.AddKubeletConfigFlags(fs, kc)
	if err := fs.Parse(dashed(c.Args)); err != nil {
		return nil, nil, fmt.Errorf("flags: %w (check --kubelet-arg)", err)
	}
	if err := kubeletoptions.ValidateKubeletFlags(flags); err != nil {
		return nil, nil, fmt.Errorf("flags: %w (check --kubelet-arg and --node-label)", err)
	}
	if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(kc.FeatureGates); err != nil {
		return nil, nil, err
	}
	if err := kubeletvalidation.ValidateKubeletConfiguration(kc, utilfeature.DefaultFeatureGate); err != nil {
		return nil, nil, fmt.Errorf("configuration: %w", err)
	}
	return flags, kc, nil
}

// Run implements component.Component.
func (k *Kubelet) Run(ctx context.Context, ready func()) error {
	c := k.Config
	flags, kc, err := c.load(ctx)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.RootDir, 0o700); err != nil {
		return err
	}
	s := &kubeletoptions.KubeletServer{KubeletFlags: *flags, KubeletConfiguration: *kc}
	deps, err := kubeletapp.UnsecuredDependencies(ctx, s, utilfeature.DefaultFeatureGate)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- kubeletapp.Run(ctx, s, deps, utilfeature.DefaultFeatureGate) }()
	if err := pollReady(ctx, c.Ready, done); err != nil {
		return err
	}
	ready()
	select {
	case err := <-done:
		if ctx.Err() == nil {
			return fmt.Errorf("kubelet stopped: %w", err)
		}
	case <-ctx.Done():
	}
	return nil
}

// dashed turns name=value pass-through flags into --name=value.
func dashed(args []string) []string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		if len(a) > 0 && a[0] != '-' {
			a = "--" + a
		}
		out = append(out, a)
	}
	return out
}
