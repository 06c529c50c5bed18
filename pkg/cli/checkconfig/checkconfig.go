// Package checkconfig is the `kasa check-config` command.
package checkconfig

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/kasa-io/kasa/pkg/checkconfig"
	"github.com/kasa-io/kasa/pkg/netguard"
)

// NewCommand returns `kasa check-config`.
func NewCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "check-config",
		Short: "Check that this host can run a kasa node, and say what to fix",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			host := checkconfig.Host{Ports: []int{6443, 10250}}
			// Reading nftables needs root, as a node does.
			if os.Geteuid() == 0 {
				host.NFTables = netguard.Available
			}
			results := checkconfig.Run(host)
			checkconfig.Print(cmd.OutOrStdout(), results)
			return checkconfig.Failed(results)
		},
	}
}
