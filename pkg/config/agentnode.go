package config

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"github.com/spf13/pflag"

	"github.com/kasa-io/kasa/pkg/settings"
)

// DefaultLBServerPort is where an agent's local load balancer listens, as
// in k3s.
const DefaultLBServerPort = 6444

// AgentNodeOptions are the raw values of `kasa agent`'s flags.
type AgentNodeOptions struct {
	ConfigFile   string
	DataDir      string
	Server       string
	Token        string
	TokenFile    string
	NodeName     string
	NodeIPs      []string
	LBServerPort int
	Debug        bool
	Verbosity    int
	Agent        AgentOptions
}

// AddFlags defines the agent's flags, with k3s's names, on fs.
func (o *AgentNodeOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&o.ConfigFile, settings.ConfigFlag, "c", settings.DefaultConfigFile, "config file (keys are flag names); files in <config>.d/*.yaml are read after it")
	settings.EnvAlias(fs, settings.ConfigFlag, "KASA_CONFIG_FILE")
	fs.StringVarP(&o.DataDir, "data-dir", "d", settings.DefaultDataDir, "folder for kasa's state")
	fs.StringVarP(&o.Server, "server", "s", "", "a server of the cluster to join, as https://HOST:6443")
	settings.EnvAlias(fs, "server", "KASA_URL")
	fs.StringVarP(&o.Token, "token", "t", "", "join token (K10<ca-hash>::<user>:<secret>); needed until the node has joined")
	settings.Sensitive(fs, "token")
	fs.StringVar(&o.TokenFile, "token-file", "", "file holding the join token")
	fs.StringVar(&o.NodeName, "node-name", "", "node name (default: the host name)")
	fs.StringSliceVar(&o.NodeIPs, "node-ip", nil, "IP address of this node (default: the address of the default route's interface)")
	fs.IntVar(&o.LBServerPort, "lb-server-port", DefaultLBServerPort, "local port of the load balancer through which the node reaches the servers")
	fs.BoolVar(&o.Debug, "debug", false, "log at debug level")
	fs.IntVarP(&o.Verbosity, "v", "v", 0, "log verbosity of the Kubernetes components")
	o.Agent.AddFlags(fs)
}

// AgentNode is the validated configuration of `kasa agent`.
type AgentNode struct {
	DataDir      string
	Server       string // https://host:port
	Token        Secret
	NodeName     string
	NodeIPs      []netip.Addr
	LBServerPort int
	Debug        bool
	Verbosity    int
	Agent        *Agent
}

// Complete validates the options.
func (o *AgentNodeOptions) Complete(h Host) (*AgentNode, error) {
	a := &AgentNode{LBServerPort: o.LBServerPort, Debug: o.Debug, Verbosity: o.Verbosity}
	var err error
	if a.DataDir, err = settings.AbsPath("--data-dir", o.DataDir); err != nil {
		return nil, err
	}
	if o.Server == "" {
		return nil, errors.New("no server to join: give --server https://HOST:6443 (or KASA_URL)")
	}
	if a.Server, err = parseServerURL(o.Server); err != nil {
		return nil, err
	}
	if a.Token, err = readToken("--token", o.Token, o.TokenFile, h); err != nil {
		return nil, err
	}
	for _, ip := range o.NodeIPs {
		addr, err := parseIP("--node-ip", ip)
		if err != nil {
			return nil, err
		}
		a.NodeIPs = append(a.NodeIPs, addr)
	}
	if len(a.NodeIPs) == 0 {
		if !h.DefaultIP.IsValid() {
			return nil, errors.New("no node IP: this machine has no default route, so set --node-ip")
		}
		a.NodeIPs = []netip.Addr{h.DefaultIP}
	}
	a.NodeName = strings.ToLower(o.NodeName)
	if a.NodeName == "" {
		a.NodeName = strings.ToLower(h.Hostname)
	}
	if a.NodeName == "" {
		return nil, errors.New("no node name: the host name is empty, so set --node-name")
	}
	if o.LBServerPort < 1 || o.LBServerPort > 65535 {
		return nil, fmt.Errorf("invalid --lb-server-port %d: want a port from 1 to 65535", o.LBServerPort)
	}
	if a.Agent, err = o.Agent.Complete(); err != nil {
		return nil, err
	}
	return a, nil
}

// parseServerURL checks --server, a server of the cluster as
// https://HOST[:PORT], and returns it with the port (6443 by default).
func parseServerURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("invalid --server: not a URL; want https://HOST:6443")
	}
	if u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.User != nil {
		return "", fmt.Errorf("invalid --server %q: want https://HOST:6443, without a user, password or path", u.Redacted())
	}
	if u.Port() == "" {
		u.Host += fmt.Sprintf(":%d", DefaultHTTPSPort)
	}
	u.Path = ""
	return u.String(), nil
}
