// Package checkconfig is the `kasa check-config` command.
package checkconfig

import (
	"github.com/spf13/cobra"

	"github.com/kasa-io/kasa/pkg/checkconfig"
)

// NewCommand returns `kasa check-config`.
func NewCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "check-config",
		Short: "Check that this host can run a kasa node, and say what to fix",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			results := checkconfig.Run(checkconfig.Host{Ports: []int{6443, 10250}})
			checkconfig.Print(cmd.OutOrStdout(), results)
			return checkconfig.Failed(results)
		},
	}
}
