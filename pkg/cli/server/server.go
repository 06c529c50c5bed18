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
)

// NewCommand returns `kasa server`.
func NewCommand() *cobra.Command {
	o := &config.ServerOptions{}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a Kubernetes control plane (and, by default, a node) on this machine",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := config.Resolve(cmd.Flags(), config.Sources{LookupEnv: os.LookupEnv}); err != nil {
				return err
			}
			cfg, err := o.Complete(hostinfo.Read())
			if err != nil {
				return err
			}
			log := logging.Setup(cmd.ErrOrStderr(), cfg.Debug, cfg.Verbosity)
			return server.Run(cmd.Context(), cfg, server.Options{Log: log, Env: agentcli.ChildEnv()})
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}
