// Package output is the --output flag of kasa's commands that list
// things: a table by default, or JSON or YAML for scripts.
package output

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// Bind defines --output (-o) on cmd, into format.
func Bind(cmd *cobra.Command, format *string) {
	cmd.Flags().StringVarP(format, "output", "o", "", "table, json or yaml (default: a table)")
}

// Check refuses a format Print does not know, before any work is done.
func Check(format string) error {
	switch strings.ToLower(format) {
	case "", "table", "json", "yaml":
		return nil
	}
	return fmt.Errorf("--output %q: table, json or yaml", format)
}

// Print writes v as JSON or YAML, or writes the table, aligned.
func Print(out io.Writer, format string, v any, table func(io.Writer)) error {
	if err := Check(format); err != nil {
		return err
	}
	switch strings.ToLower(format) {
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = out.Write(b)
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	table(w)
	return w.Flush()
}
