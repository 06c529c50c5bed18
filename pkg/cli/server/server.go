// Package server is the `kasa server` command.
package server

import (
	"os"
	"strings"

	"github.com/spf13/cobra"

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
			return server.Run(cmd.Context(), cfg, server.Options{Log: log, Env: childEnv()})
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// childEnv is kasa's environment for its child processes, without the KASA_*
// settings (which may hold secrets).
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KASA_") {
			env = append(env, kv)
		}
	}
	return env
}
