// Package version is `kasa version`: kasa's version, Kubernetes' and every
// bundled part's, as a table or as JSON or YAML (--output).
package version

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/kasa-io/kasa/pkg/cli/output"
	"github.com/kasa-io/kasa/pkg/version"
)

// NewCommand returns `kasa version`.
func NewCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print kasa's version and the versions of the parts it is made of",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return Print(cmd.OutOrStdout(), format, version.Get())
		},
	}
	output.Bind(cmd, &format)
	return cmd
}

// Print writes info in format (table, json or yaml).
func Print(w io.Writer, format string, info version.Info) error {
	return output.Print(w, format, info, func(w io.Writer) {
		fmt.Fprintf(w, "kasa\t%s\t(commit %s, built %s)\n", info.Version, info.GitCommit, info.BuildDate)
		fmt.Fprintf(w, "go\t%s\t%s\n", info.Go, info.Platform)
		for _, p := range info.Parts {
			fmt.Fprintf(w, "%s\t%s\t%s\n", p.Name, p.Version, p.In)
		}
	})
}
