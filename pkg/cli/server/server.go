// Package server is the `kasa server` command.
package server

import (
	"os"

	"github.com/spf13/cobra"

	agentcli "github.com/kasa-io/kasa/pkg/cli/agent"
	"github.com/kasa-io/kasa/pkg/cli/hostinfo"
	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/logging"
	"github.com/kasa-io/kasa/pkg/server"
	"github.com/kasa-io/kasa/pkg/settings"
)

// NewCommand returns `kasa server`.
func NewCommand() *cobra.Command {
	return newCommand(hostinfo.Read, func(cmd *cobra.Command, cfg *config.Server) error {
		log := logging.Setup(cmd.ErrOrStderr(), cfg.Debug, cfg.Verbosity)
		_, gogc := os.LookupEnv("GOGC")
		return server.Run(cmd.Context(), cfg, server.Options{Log: log, Env: agentcli.ChildEnv(), FixedGOGC: gogc})
	})
}

// newCommand returns `kasa server`, which resolves its flags (the command
// line, KASA_*, the config files) into the settings, on the facts host
// reads, and hands them to run.
func newCommand(host func() config.Host, run func(*cobra.Command, *config.Server) error) *cobra.Command {
	o := &config.ServerOptions{}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a Kubernetes control plane (and, by default, a node) on this machine",
		Args:  cobra.NoArgs,
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
