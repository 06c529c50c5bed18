// Package root builds the `kasa` command tree.
package root

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kasa-io/kasa/pkg/cli/agent"
	"github.com/kasa-io/kasa/pkg/cli/apps"
	"github.com/kasa-io/kasa/pkg/cli/certificate"
	"github.com/kasa-io/kasa/pkg/cli/checkconfig"
	"github.com/kasa-io/kasa/pkg/cli/db"
	"github.com/kasa-io/kasa/pkg/cli/killall"
	"github.com/kasa-io/kasa/pkg/cli/kubectl"
	"github.com/kasa-io/kasa/pkg/cli/secretsencrypt"
	"github.com/kasa-io/kasa/pkg/cli/server"
	"github.com/kasa-io/kasa/pkg/cli/token"
	"github.com/kasa-io/kasa/pkg/cli/tools"
	upcli "github.com/kasa-io/kasa/pkg/cli/up"
	versioncmd "github.com/kasa-io/kasa/pkg/cli/version"
	"github.com/kasa-io/kasa/pkg/version"
)

// NewCommand returns the root command with every subcommand.
func NewCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:           "kasa",
		Short:         "kasa: a lightweight Kubernetes distribution in one binary",
		Version:       version.String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.SetVersionTemplate("{{.Version}}\n")
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())
	})
	env := kubectl.OSEnv()
	cmd.AddCommand(
		server.NewCommand(),
		agent.NewCommand(),
		token.NewCommand(env.Kubeconfig()),
		kubectl.NewCommand(env),
		killall.NewCommand(),
		checkconfig.NewCommand(),
		secretsencrypt.NewCommand(),
		db.NewCommand(),
		certificate.NewCommand(),
		versioncmd.NewCommand(),
	)
	cmd.AddCommand(apps.NewCommands(env.Kubeconfig())...)
	cmd.AddCommand(upcli.NewCommands()...)
	for _, t := range tools.Tools {
		cmd.AddCommand(tools.NewCommand(t))
	}
	return cmd
}
