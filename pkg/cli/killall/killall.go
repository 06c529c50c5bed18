// Package killall is the `kasa killall` command.
package killall

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/kasa-io/kasa/pkg/datadir"
	"github.com/kasa-io/kasa/pkg/killall"
	"github.com/kasa-io/kasa/pkg/logging"
	"github.com/kasa-io/kasa/pkg/settings"
)

// NewCommand returns `kasa killall`.
func NewCommand() *cobra.Command {
	return newCommand(func(cmd *cobra.Command, dataDir string) error {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		log := logging.Setup(cmd.ErrOrStderr(), false, 0)
		return killall.Run(killall.Options{
			DataDir: dataDir,
			RunDir:  datadir.RunDir,
			Self:    os.Getpid(),
			KasaExe: exe,
			Log:     log,
		})
	})
}

// newCommand returns `kasa killall`, which resolves the data dir as the
// server and agent do (--data-dir, KASA_DATA_DIR, the config files'
// data-dir, whose other keys it ignores) and hands it to run.
func newCommand(run func(cmd *cobra.Command, dataDir string) error) *cobra.Command {
	o := &settings.DataDirOptions{}
	cmd := &cobra.Command{
		Use:   "killall",
		Short: "Stop kasa, containerd and every pod on this machine and undo their network changes; data stays",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := settings.Resolve(cmd.Flags(), settings.Sources{LookupEnv: os.LookupEnv, IgnoreUnknownKeys: true}); err != nil {
				return err
			}
			dataDir, err := o.Complete()
			if err != nil {
				return err
			}
			return run(cmd, dataDir)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}
