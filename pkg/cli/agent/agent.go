// Package agent is the `kasa agent` command.
package agent

import (
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kasa-io/kasa/pkg/agent"
	"github.com/kasa-io/kasa/pkg/cli/hostinfo"
	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/logging"
	"github.com/kasa-io/kasa/pkg/settings"
)

// NewCommand returns `kasa agent`.
func NewCommand() *cobra.Command {
	return newCommand(hostinfo.Read, func(cmd *cobra.Command, cfg *config.AgentNode) error {
		log := logging.Setup(cmd.ErrOrStderr(), cfg.Debug, cfg.Verbosity)
		if _, ok := os.LookupEnv("GOGC"); !ok {
			debug.SetGCPercent(agent.GCPercent)
		}
		return agent.Run(cmd.Context(), cfg, agent.Options{Log: log, Env: ChildEnv()})
	})
}

// newCommand returns `kasa agent`, which resolves its flags (the command
// line, KASA_*, the config files) into the settings, on the facts host
// reads, and hands them to run.
func newCommand(host func() config.Host, run func(*cobra.Command, *config.AgentNode) error) *cobra.Command {
	o := &config.AgentNodeOptions{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Join this machine to a cluster as a node",
		Long: `Join this machine to a kasa cluster as a node and run the node's parts: containerd, the
kubelet, kube-proxy and the pod network. The first start needs the server's address and a token;
later starts use the node's certificates.

  kasa agent --server https://SERVER:6443 --token K10...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := settings.Resolve(cmd.Flags(), settings.Sources{LookupEnv: os.LookupEnv}); err != nil {
				return err
			}
			cfg, err := o.Complete(host())
			if err != nil {
				return err
			}
			return run(cmd, cfg)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// ChildEnv is kasa's environment for its child processes, without the
// KASA_* settings (which may hold secrets).
func ChildEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KASA_") {
			env = append(env, kv)
		}
	}
	return env
}
