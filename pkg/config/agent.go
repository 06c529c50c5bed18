package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// Flannel backends kasa supports.
var flannelBackends = []string{"vxlan", "host-gw", "none"}

// AgentOptions are the flags of a node's parts, shared by `kasa server` and
// `kasa agent`.
type AgentOptions struct {
	NodeLabels                     []string
	NodeTaints                     []string
	KubeletArgs                    []string
	KubeProxyArgs                  []string
	FlannelIface                   string
	ResolvConf                     string
	DisableDefaultRegistryEndpoint bool
	PrivateRegistry                string
	LocalStoragePath               string
	ProtectKernelDefaults          bool
}

// AddFlags defines the node's flags, with k3s's names.
func (o *AgentOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringArrayVar(&o.NodeLabels, "node-label", nil, "label for this node, as key=value (repeatable)")
	fs.StringArrayVar(&o.NodeTaints, "node-taint", nil, "taint for this node, as key=value:Effect (repeatable)")
	fs.StringArrayVar(&o.KubeletArgs, "kubelet-arg", nil, "extra kubelet flag, as name=value (repeatable)")
	fs.StringArrayVar(&o.KubeProxyArgs, "kube-proxy-arg", nil, "extra kube-proxy flag, as name=value (repeatable)")
	fs.StringVar(&o.FlannelIface, "flannel-iface", "", "interface for the pod network between nodes (default: the node IP's)")
	fs.StringVar(&o.ResolvConf, "resolv-conf", "", "resolv.conf for pods (default: the host's, unless it names loopback servers)")
	fs.BoolVar(&o.DisableDefaultRegistryEndpoint, "disable-default-registry-endpoint", false, "never fall back to a registry's own endpoint when its mirrors fail")
	fs.StringVar(&o.PrivateRegistry, "private-registry", "/etc/kasa/registries.yaml", "registry mirrors, auth and TLS, in k3s's registries.yaml format (rewrites are refused)")
	fs.StringVar(&o.LocalStoragePath, "default-local-storage-path", "", "folder of local-path volumes (default <data-dir>/storage)")
	fs.BoolVar(&o.ProtectKernelDefaults, "protect-kernel-defaults", false, "refuse to start when a kernel setting the kubelet needs differs, rather than change it")
}

// Agent is the validated configuration of this machine's node.
type Agent struct {
	NodeLabels                     map[string]string
	NodeTaints                     []string
	KubeletArgs                    []string
	KubeProxyArgs                  []string
	FlannelIface                   string
	ResolvConf                     string
	DisableDefaultRegistryEndpoint bool
	PrivateRegistry                string
	// LocalStoragePath is empty for <data-dir>/storage.
	LocalStoragePath string
	// ProtectKernelDefaults: the node leaves the kernel settings that the
	// kubelet tunes as they are, and refuses to start when one differs.
	ProtectKernelDefaults bool
}

// Complete validates the node's options.
func (o *AgentOptions) Complete() (*Agent, error) {
	a := &Agent{
		NodeLabels:                     map[string]string{},
		NodeTaints:                     o.NodeTaints,
		KubeletArgs:                    o.KubeletArgs,
		KubeProxyArgs:                  o.KubeProxyArgs,
		FlannelIface:                   o.FlannelIface,
		ResolvConf:                     o.ResolvConf,
		DisableDefaultRegistryEndpoint: o.DisableDefaultRegistryEndpoint,
		PrivateRegistry:                o.PrivateRegistry,
		LocalStoragePath:               o.LocalStoragePath,
		ProtectKernelDefaults:          o.ProtectKernelDefaults,
	}
	for _, l := range o.NodeLabels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid --node-label %q: want key=value", l)
		}
		a.NodeLabels[k] = v
	}
	for _, t := range o.NodeTaints {
		kv, effect, ok := strings.Cut(t, ":")
		if !ok || kv == "" || !slices.Contains([]string{"NoSchedule", "PreferNoSchedule", "NoExecute"}, effect) {
			return nil, fmt.Errorf("invalid --node-taint %q: want key=value:NoSchedule (or PreferNoSchedule, NoExecute)", t)
		}
	}
	if err := checkPassthrough("--kubelet-arg", o.KubeletArgs); err != nil {
		return nil, err
	}
	if err := checkPassthrough("--kube-proxy-arg", o.KubeProxyArgs); err != nil {
		return nil, err
	}
	// The kubelet's own flag, which overrides kasa's, means the same: kasa
	// checks the settings before the kubelet, which would end the process.
	for _, arg := range o.KubeletArgs {
		name, value, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if name != "protect-kernel-defaults" {
			continue
		}
		on, err := strconv.ParseBool(value)
		if !hasValue {
			on, err = true, nil
		}
		if err != nil {
			return nil, fmt.Errorf("invalid --kubelet-arg %q: want protect-kernel-defaults=true or false", arg)
		}
		a.ProtectKernelDefaults = on
	}
	return a, nil
}

// checkPassthrough checks flags meant for an upstream component.
func checkPassthrough(flag string, args []string) error {
	for _, arg := range args {
		if name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "="); name == "" {
			return fmt.Errorf("invalid %s %q: want name=value", flag, arg)
		}
	}
	return nil
}
