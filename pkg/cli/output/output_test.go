package output

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/spf13/cobra"
)

// TestPrint: -o json and -o yaml (in any case) print the value; no -o
// or -o table prints the table, aligned; another format is refused, naming the flag.
func TestPrint(t *testing.T) {
	type row struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	}
	rows := []row{{"mysql", "8.4"}, {"postgresql", "17"}}
	table := func(w io.Writer) {
		fmt.Fprintln(w, "NAME\tVERSION")
		for _, r := range rows {
			fmt.Fprintf(w, "%s\t%s\n", r.Name, r.Version)
		}
	}
	for _, tt := range []struct {
		args []string
		want string
		err  string
	}{
		{nil, "NAME        VERSION\nmysql       8.4\npostgresql  17\n", ""},
		{[]string{"-o", "json"}, "[\n  {\n    \"name\": \"mysql\",\n    \"version\": \"8.4\"\n  },\n  {\n    \"name\": \"postgresql\",\n    \"version\": \"17\"\n  }\n]\n", ""},
		{[]string{"--output", "YAML"}, "- name: mysql\n  version: \"8.4\"\n- name: postgresql\n  version: \"17\"\n", ""},
		{[]string{"-o", "table"}, "NAME        VERSION\nmysql       8.4\npostgresql  17\n", ""},
		{[]string{"-o", "xml"}, "", `--output "xml": table, json or yaml`},
	} {
		var format string
		cmd := &cobra.Command{Use: "x"}
		Bind(cmd, &format)
		if err := cmd.ParseFlags(tt.args); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		err := Print(&out, format, rows, table)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err || out.Len() != 0 {
				t.Errorf("%v: %v, %q; want the error %q", tt.args, err, out.String(), tt.err)
			}
			continue
		}
		if err != nil || out.String() != tt.want {
			t.Errorf("%v: %v\n%s\nwant\n%s", tt.args, err, out.String(), tt.want)
		}
	}
}
