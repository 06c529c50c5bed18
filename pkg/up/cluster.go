// Package up is `kasa up`: it installs a cluster on machines reached over
// SSH, as a cluster file describes it.
package up

import (
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// APIVersion and Kind of a cluster file.
const (
	APIVersion = "kasa.io/v1alpha1"
	Kind       = "Cluster"
)

// Roles of a host.
const (
	RoleServer = "server"
	RoleAgent  = "agent"
)

// Cluster is a cluster file: the machines and how to reach them.
type Cluster struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	Spec       Spec     `json:"spec"`
}

// Metadata names the cluster; the name is the kubeconfig context's.
type Metadata struct {
	Name string `json:"name"`
}

// Spec is the cluster's settings and hosts.
type Spec struct {
	// Version is the kasa release the hosts run; empty: the version of the
	// kasa that runs `kasa up`, whose own binary is uploaded.
	Version string `json:"version,omitempty"`
	// Token is the server's token: a secret, or the full token of a
	// server that runs (K10<ca hash>::server:<secret>), whose CA the
	// server must have. Empty: generated on the first run and kept in the
	// local state file. Agents join with a secret of their own, pinned to
	// the server's CA.
	Token string `json:"token,omitempty"`
	// DatastoreEndpoint is the servers' --datastore-endpoint: an external
	// MySQL, MariaDB or PostgreSQL that several servers share (needed for
	// more than one).
	DatastoreEndpoint string   `json:"datastoreEndpoint,omitempty"`
	TLSSANs           []string `json:"tlsSANs,omitempty"`
	// RegistrationAddress is the one address, HOST or HOST:PORT, that the
	// servers are put behind (a DNS name with every server's address, or
	// a TCP load balancer on port 6443): every server's certificate names
	// it, agents join through it and the kubeconfig points at it. Empty:
	// the first server's address.
	RegistrationAddress string `json:"registrationAddress,omitempty"`
	// SSH holds the defaults of every host's connection.
	SSH   SSH    `json:"ssh,omitempty"`
	Hosts []Host `json:"hosts"`
}

// SSH is how a host is reached.
type SSH struct {
	Address string `json:"address,omitempty"`
	User    string `json:"user,omitempty"`
	Port    int    `json:"port,omitempty"`
	KeyPath string `json:"keyPath,omitempty"`
	// Bastion is a jump host, as [USER@]HOST[:PORT].
	Bastion string `json:"bastion,omitempty"`
}

// Host is one machine of the cluster.
type Host struct {
	// Name is how kasa up names the host in its output; default: the address.
	Name string `json:"name,omitempty"`
	Role string `json:"role"`
	SSH  SSH    `json:"ssh"`
	// InstallFlags are more flags of kasa server or kasa agent.
	InstallFlags []string `json:"installFlags,omitempty"`
	// Environment is more KASA_* settings of the host's service.
	Environment map[string]string `json:"environment,omitempty"`
}

// defaults of a host's SSH connection.
const (
	DefaultUser = "root"
	DefaultPort = 22
)

var (
	varRE  = regexp.MustCompile(`\$(\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)`)
	nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
	envRE  = regexp.MustCompile(`^KASA_[A-Z0-9_]+$`)
)

// Load reads a cluster file. $VAR and ${VAR} are replaced by the
// environment's values (lookup), and a variable that is not set is an
// error; $$ is a dollar sign. The result is validated and its defaults
// filled in.
func Load(file string, lookup func(string) (string, bool)) (*Cluster, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	c, err := Parse(data, lookup)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return c, nil
}

// Parse is Load for the file's content.
func Parse(data []byte, lookup func(string) (string, bool)) (*Cluster, error) {
	expanded, err := expand(string(data), lookup)
	if err != nil {
		return nil, err
	}
	var c Cluster
	if err := yaml.UnmarshalStrict([]byte(expanded), &c); err != nil {
		return nil, fmt.Errorf("not a valid cluster file: %w", err)
	}
	if err := c.Complete(); err != nil {
		return nil, err
	}
	return &c, nil
}

// expand replaces $VAR and ${VAR}, refusing unset variables.
func expand(s string, lookup func(string) (string, bool)) (string, error) {
	const dollar = "\x00dollar\x00"
	s = strings.ReplaceAll(s, "$$", dollar)
	var missing []string
	s = varRE.ReplaceAllStringFunc(s, func(m string) string {
		name := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(m, "$"), "{"), "}")
		v, ok := lookup(name)
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		slices.Sort(missing)
		return "", fmt.Errorf("environment variables not set: %s (set them, or write $$ for a dollar sign)", strings.Join(slices.Compact(missing), ", "))
	}
	return strings.ReplaceAll(s, dollar, "$"), nil
}

// Complete checks the cluster and fills in the defaults of its hosts.
func (c *Cluster) Complete() error {
	if c.APIVersion != APIVersion || c.Kind != Kind {
		return fmt.Errorf("apiVersion %q, kind %q: want apiVersion %s and kind %s", c.APIVersion, c.Kind, APIVersion, Kind)
	}
	if c.Metadata.Name == "" {
		c.Metadata.Name = "kasa"
	}
	if !nameRE.MatchString(c.Metadata.Name) {
		return fmt.Errorf("metadata.name %q: use lowercase letters, digits, '-' and '.'", c.Metadata.Name)
	}
	if len(c.Spec.Hosts) == 0 {
		return errors.New("spec.hosts is empty: list at least one server")
	}
	if err := checkToken(c.Spec.Token); err != nil {
		return err
	}
	servers := 0
	names := map[string]bool{}
	addrs := map[string]bool{}
	for i := range c.Spec.Hosts {
		h := &c.Spec.Hosts[i]
		where := fmt.Sprintf("spec.hosts[%d]", i)
		if h.SSH.Address == "" {
			return fmt.Errorf("%s: ssh.address is empty", where)
		}
		if h.Name == "" {
			h.Name = h.SSH.Address
		}
		where = fmt.Sprintf("spec.hosts[%d] (%s)", i, h.Name)
		switch h.Role {
		case RoleServer:
			servers++
		case RoleAgent:
		default:
			return fmt.Errorf("%s: role %q: want server or agent", where, h.Role)
		}
		if h.SSH.User == "" {
			h.SSH.User = or(c.Spec.SSH.User, DefaultUser)
		}
		if h.SSH.Port == 0 {
			h.SSH.Port = c.Spec.SSH.Port
		}
		if h.SSH.Port == 0 {
			h.SSH.Port = DefaultPort
		}
		if h.SSH.Port < 1 || h.SSH.Port > 65535 {
			return fmt.Errorf("%s: ssh.port %d: want 1 to 65535", where, h.SSH.Port)
		}
		if h.SSH.KeyPath == "" {
			h.SSH.KeyPath = c.Spec.SSH.KeyPath
		}
		if h.SSH.Bastion == "" {
			h.SSH.Bastion = c.Spec.SSH.Bastion
		}
		if h.SSH.Bastion != "" {
			if _, _, _, err := ParseTarget(h.SSH.Bastion, DefaultUser, DefaultPort); err != nil {
				return fmt.Errorf("%s: ssh.bastion: %w", where, err)
			}
		}
		key := net.JoinHostPort(h.SSH.Address, strconv.Itoa(h.SSH.Port))
		if addrs[key] {
			return fmt.Errorf("%s: %s is listed twice", where, key)
		}
		addrs[key] = true
		if names[h.Name] {
			return fmt.Errorf("%s: the name %s is given twice", where, h.Name)
		}
		names[h.Name] = true
		for k := range h.Environment {
			if !envRE.MatchString(k) {
				return fmt.Errorf("%s: environment %q: only KASA_* settings go to kasa's service", where, k)
			}
		}
		if err := checkInstallFlags(h); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if err := checkTokenSettings(h); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	switch {
	case servers == 0:
		return errors.New("no host has role server: a cluster needs one")
	case servers > 1 && c.Spec.DatastoreEndpoint == "":
		return fmt.Errorf("%d hosts have role server: several servers share an external datastore; give spec.datastoreEndpoint (a MySQL, MariaDB or PostgreSQL DSN), or make the others agents", servers)
	}
	if a := c.Spec.RegistrationAddress; a != "" {
		if strings.ContainsAny(a, "/ @") {
			return fmt.Errorf("spec.registrationAddress %q: want HOST or HOST:PORT", a)
		}
		host := a
		if h, p, err := net.SplitHostPort(a); err == nil {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("spec.registrationAddress %q: the port must be 1 to 65535", a)
			}
			host = h
		}
		if host == "" {
			return fmt.Errorf("spec.registrationAddress %q: want HOST or HOST:PORT", a)
		}
	}
	return nil
}

// Server returns the cluster's first server host, which makes the cluster.
func (c *Cluster) Server() *Host {
	if s := c.Servers(); len(s) > 0 {
		return s[0]
	}
	return nil
}

// Servers returns the cluster's server hosts, the first first.
func (c *Cluster) Servers() []*Host {
	var list []*Host
	for i := range c.Spec.Hosts {
		if c.Spec.Hosts[i].Role == RoleServer {
			list = append(list, &c.Spec.Hosts[i])
		}
	}
	return list
}

// registrationURL is where agents and the kubeconfig reach the servers:
// the registration address, else the first server's, on port 6443 unless
// the address names another.
func (c *Cluster) registrationURL() string {
	a := c.Spec.RegistrationAddress
	if a == "" {
		a = c.Server().SSH.Address
	}
	if _, _, err := net.SplitHostPort(a); err != nil {
		a = net.JoinHostPort(strings.Trim(a, "[]"), "6443")
	}
	return "https://" + a
}

// ParseTarget reads [USER@]HOST[:PORT], with user and port defaults.
func ParseTarget(s, defUser string, defPort int) (user, host string, port int, err error) {
	user, host = defUser, s
	if u, h, ok := strings.Cut(s, "@"); ok {
		if u == "" {
			return "", "", 0, fmt.Errorf("%q: empty user before @", s)
		}
		user, host = u, h
	}
	port = defPort
	if h, p, err := net.SplitHostPort(host); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", "", 0, fmt.Errorf("%q: bad port %q", s, p)
		}
		host, port = h, n
	}
	if host == "" || strings.ContainsAny(host, " /") {
		return "", "", 0, fmt.Errorf("%q: want [USER@]HOST[:PORT]", s)
	}
	return user, host, port, nil
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
