// Package up is `kasa up` and `kasa down`: a cluster over SSH.
package up

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kasa-io/kasa/pkg/bundle"
	"github.com/kasa-io/kasa/pkg/settings"
	"github.com/kasa-io/kasa/pkg/up"
	"github.com/kasa-io/kasa/pkg/version"
)

// flags are the options of kasa up and kasa down.
type flags struct {
	file, server, sshKey, user, bastion, kubeconfig, context string
	agents, serverArgs, agentArgs, downHosts                 []string
	sudoPasswordStdin, acceptNew, insecure, noSwitch, dryRun bool
	concurrency                                              int
}

func (f *flags) bind(cmd *cobra.Command, up bool) {
	fs := cmd.Flags()
	fs.StringVarP(&f.file, "file", "f", "", "cluster file (kind: Cluster)")
	fs.StringVar(&f.server, "server", "", "the server host, as [USER@]HOST[:PORT] (without -f)")
	fs.StringArrayVar(&f.agents, "agent", nil, "an agent host, as [USER@]HOST[:PORT] (repeatable; without -f)")
	fs.StringVar(&f.sshKey, "ssh-key", "", "private key file (default: ssh-agent and ~/.ssh/id_ed25519, id_ecdsa, id_rsa)")
	fs.StringVar(&f.user, "user", "root", "SSH user when a host names none")
	fs.StringVar(&f.bastion, "bastion", "", "jump host, as [USER@]HOST[:PORT]")
	fs.BoolVar(&f.sudoPasswordStdin, "sudo-password-stdin", false, "read the sudo password from standard input (else KASA_SUDO_PASSWORD)")
	fs.BoolVar(&f.acceptNew, "accept-new-host-keys", false, "record the keys of hosts that ~/.ssh/known_hosts lacks")
	fs.BoolVar(&f.insecure, "insecure-ignore-host-key", false, "do not check host keys at all (unsafe)")
	fs.StringVar(&f.kubeconfig, "kubeconfig-out", "", "kubeconfig to merge the cluster's context into (default ~/.kube/config)")
	fs.StringVar(&f.context, "context", "", "the context's name (default: the cluster file's name, else kasa)")
	if !up {
		fs.StringArrayVar(&f.downHosts, "host", nil, "a host to uninstall, as [USER@]HOST[:PORT] (repeatable; without -f)")
	}
	if up {
		fs.StringArrayVar(&f.serverArgs, "server-arg", nil, "extra flag of kasa server (repeatable)")
		fs.StringArrayVar(&f.agentArgs, "agent-arg", nil, "extra flag of kasa agent (repeatable)")
		fs.IntVar(&f.concurrency, "concurrency", 4, "agents installed at once")
		fs.BoolVar(&f.noSwitch, "no-switch-context", false, "keep the kubeconfig's current context")
		fs.BoolVar(&f.dryRun, "dry-run", false, "print what would be done on each host, and connect to none")
	}
}

// cluster is the cluster file, or the cluster the flags describe.
func (f *flags) cluster() (*up.Cluster, error) {
	var c *up.Cluster
	if len(f.downHosts) > 0 {
		if f.file != "" || f.server != "" || len(f.agents) > 0 {
			return nil, errors.New("give --host, or -f, or --server/--agent")
		}
		c = &up.Cluster{APIVersion: up.APIVersion, Kind: up.Kind}
		for _, h := range f.downHosts {
			user, host, port, err := up.ParseTarget(h, f.user, up.DefaultPort)
			if err != nil {
				return nil, fmt.Errorf("--host: %w", err)
			}
			c.Spec.Hosts = append(c.Spec.Hosts, up.Host{Name: host, Role: up.RoleAgent, SSH: up.SSH{Address: host, User: user, Port: port, KeyPath: f.sshKey, Bastion: f.bastion}})
		}
		c.Metadata.Name = f.context
		return c, nil
	}
	if f.file != "" {
		if f.server != "" || len(f.agents) > 0 {
			return nil, errors.New("give -f or --server/--agent, not both")
		}
		var err error
		if c, err = up.Load(f.file, os.LookupEnv); err != nil {
			return nil, err
		}
	} else {
		if f.server == "" {
			return nil, errors.New("no hosts: give -f cluster.yaml, or --server [USER@]HOST and --agent [USER@]HOST")
		}
		spec := up.Spec{SSH: up.SSH{User: f.user, KeyPath: f.sshKey, Bastion: f.bastion}}
		add := func(target, role string, args []string) error {
			user, host, port, err := up.ParseTarget(target, f.user, up.DefaultPort)
			if err != nil {
				return fmt.Errorf("--%s: %w", role, err)
			}
			spec.Hosts = append(spec.Hosts, up.Host{Role: role, InstallFlags: args,
				SSH: up.SSH{Address: host, User: user, Port: port}})
			return nil
		}
		if err := add(f.server, up.RoleServer, f.serverArgs); err != nil {
			return nil, err
		}
		for _, a := range f.agents {
			if err := add(a, up.RoleAgent, f.agentArgs); err != nil {
				return nil, err
			}
		}
		c = &up.Cluster{APIVersion: up.APIVersion, Kind: up.Kind, Spec: spec}
		if err := c.Complete(); err != nil {
			return nil, err
		}
	}
	if f.context != "" {
		c.Metadata.Name = f.context
	}
	for i := range c.Spec.Hosts {
		h := &c.Spec.Hosts[i]
		if h.SSH.KeyPath == "" {
			h.SSH.KeyPath = f.sshKey
		}
		if h.SSH.Bastion == "" {
			h.SSH.Bastion = f.bastion
		}
	}
	return c, nil
}

func (f *flags) options(cmd *cobra.Command) (up.Options, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return up.Options{}, err
	}
	bin, err := artifact()
	if err != nil {
		return up.Options{}, err
	}
	o := up.Options{
		Binary:          bin,
		Concurrency:     f.concurrency,
		Kubeconfig:      f.kubeconfig,
		NoSwitchContext: f.noSwitch,
		StateDir:        filepath.Join(home, ".kasa", "up"),
		Out:             cmd.OutOrStdout(),
		Auth: up.Auth{
			KnownHosts:  filepath.Join(home, ".ssh", "known_hosts"),
			AcceptNew:   f.acceptNew,
			Insecure:    f.insecure,
			AgentSocket: os.Getenv("SSH_AUTH_SOCK"),
			DefaultKeys: []string{filepath.Join(home, ".ssh", "id_ed25519"), filepath.Join(home, ".ssh", "id_ecdsa"), filepath.Join(home, ".ssh", "id_rsa")},
		},
	}
	if o.Kubeconfig == "" {
		o.Kubeconfig = filepath.Join(home, ".kube", "config")
	}
	if f.insecure {
		fmt.Fprintln(cmd.ErrOrStderr(), "kasa: WARNING: --insecure-ignore-host-key: host keys are not checked; anyone in between can take the connection, the token and the sudo password")
	}
	if term.IsTerminal(int(os.Stdin.Fd())) {
		o.Auth.Passphrase = func(file string) ([]byte, error) {
			fmt.Fprintf(cmd.ErrOrStderr(), "passphrase of %s: ", file)
			defer fmt.Fprintln(cmd.ErrOrStderr())
			return term.ReadPassword(int(os.Stdin.Fd()))
		}
	}
	// SSH password authentication, for hosts without keys.
	o.Auth.Password = os.Getenv("KASA_SSH_PASSWORD")
	switch {
	case f.sudoPasswordStdin:
		line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return o, fmt.Errorf("--sudo-password-stdin: %w", err)
		}
		o.SudoPassword = strings.TrimRight(line, "\r\n")
	default:
		o.SudoPassword = os.Getenv("KASA_SUDO_PASSWORD")
	}
	return o, nil
}

// NewCommands returns kasa up and kasa down.
func NewCommands() []*cobra.Command {
	var uf, df flags
	upCmd := &cobra.Command{
		Use:   "up",
		Short: "Install a cluster on machines over SSH (servers and agents), and merge its kubeconfig",
		Long: `Install kasa on each host over SSH: the binary (this one) is uploaded and checked, so the hosts need
no internet; install.sh runs there as root; the server comes first, then the agents in parallel.
Running it again checks each host and changes only what differs.

  kasa up --server root@10.0.0.1 --agent pi@10.0.0.2 --agent pi@10.0.0.3
  kasa up -f cluster.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := uf.cluster()
			if err != nil {
				return err
			}
			if v := c.Spec.Version; v != "" && v != version.Version {
				return fmt.Errorf("the cluster file asks for kasa %s, and this is kasa %s, whose own binary kasa up installs: run the kasa of that version", v, version.Version)
			}
			if uf.dryRun {
				for _, h := range c.Spec.Hosts {
					fmt.Fprintf(cmd.OutOrStdout(), "%-16s %-6s ssh %s@%s:%d; install kasa %s %s\n", h.Name, h.Role, h.SSH.User, h.SSH.Address, h.SSH.Port, h.Role, strings.Join(h.InstallFlags, " "))
				}
				return nil
			}
			o, err := uf.options(cmd)
			if err != nil {
				return err
			}
			start := time.Now()
			results, err := up.Up(cmd.Context(), c, o)
			if err != nil {
				return err
			}
			return summary(cmd.OutOrStdout(), results, time.Since(start))
		},
	}
	uf.bind(upCmd, true)
	settings.Sensitive(upCmd.Flags(), "sudo-password-stdin")
	downCmd := &cobra.Command{
		Use:   "down",
		Short: "Uninstall kasa from every host of a cluster (agents first) and remove its context",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := df.cluster()
			if err != nil {
				return err
			}
			o, err := df.options(cmd)
			if err != nil {
				return err
			}
			start := time.Now()
			return summary(cmd.OutOrStdout(), up.Down(cmd.Context(), c, o), time.Since(start))
		},
	}
	df.bind(downCmd, false)
	return []*cobra.Command{upCmd, downCmd}
}

func summary(w io.Writer, results []up.Result, took time.Duration) error {
	failed := 0
	fmt.Fprintln(w)
	for _, r := range results {
		state := "ok"
		if r.Err != nil {
			state = "FAILED: " + r.Err.Error()
			failed++
		} else if r.Role != "" && !r.Changed {
			state = "ok (unchanged)"
		}
		fmt.Fprintf(w, "%-16s %-6s %s\n", r.Host, r.Role, state)
	}
	fmt.Fprintf(w, "%d hosts, %d failed, in %s\n", len(results), failed, took.Round(100*time.Millisecond))
	if failed > 0 {
		return fmt.Errorf("%d of %d hosts failed; run again to pick up from there", failed, len(results))
	}
	return nil
}

// artifact is the file that kasa up uploads: the release artifact that
// started this kasa (its launcher says which in KASA_ARTIFACT), else the
// program itself, which `make` builds with its bundle.
func artifact() (string, error) {
	if a := os.Getenv(bundle.ArtifactEnv); a != "" {
		return a, nil
	}
	return os.Executable()
}
