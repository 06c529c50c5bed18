package root

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kasa-io/kasa/pkg/version"
)

// newRoot builds the command tree as main does: upstream packages' global
// flags are not merged into kasa's commands.
func newRoot(t *testing.T) *cobra.Command {
	t.Helper()
	global := pflag.CommandLine
	pflag.CommandLine = pflag.NewFlagSet("kasa", pflag.ContinueOnError)
	t.Cleanup(func() { pflag.CommandLine = global })
	return NewCommand()
}

// TestCommandTree: kasa has its commands, each with a one-line
// description and something to run.
func TestCommandTree(t *testing.T) {
	want := map[string][]string{
		"kasa": {"agent", "apps", "certificate", "check-config", "crictl", "ctr", "db", "down", "info", "install", "killall", "kubectl",
			"list", "secrets-encrypt", "server", "status", "token", "uninstall", "up", "upgrade", "version"},
		"kasa token":           {"create", "delete", "list", "rotate"},
		"kasa secrets-encrypt": {"rotate-keys", "status"},
		"kasa db":              {"snapshot", "status"},
		"kasa certificate":     {"check", "rotate", "rotate-ca"},
		"kasa db snapshot":     {"delete", "list", "prune", "save"},
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		var names []string
		for _, sub := range c.Commands() {
			names = append(names, sub.Name())
			walk(sub)
		}
		slices.Sort(names)
		if !slices.Equal(names, want[c.CommandPath()]) {
			t.Errorf("%s: subcommands %v, want %v", c.CommandPath(), names, want[c.CommandPath()])
		}
		if c.Short == "" || strings.Contains(c.Short, "\n") {
			t.Errorf("%s: short description %q, want one line", c.CommandPath(), c.Short)
		}
		if len(c.Commands()) == 0 && c.RunE == nil {
			t.Errorf("%s: no RunE", c.CommandPath())
		}
		if c.Run != nil {
			t.Errorf("%s: Run, want RunE (errors go back to main)", c.CommandPath())
		}
	}
	walk(newRoot(t))
}

// TestHelp: every command's help renders (a flag whose shorthand clashes
// with an inherited one would panic here) and names each of its flags with
// a description.
func TestHelp(t *testing.T) {
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			walk(sub, append(slices.Clone(path), sub.Name()))
		}
	}
	walk(newRoot(t), nil)
	for _, path := range paths {
		cmd := newRoot(t)
		found, _, err := cmd.Find(path)
		if err != nil {
			t.Fatal(err)
		}
		if found.DisableFlagParsing {
			continue // every argument is the tool's, --help too: it would run kubectl, crictl or ctr
		}
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append(slices.Clone(path), "--help"))
		if err := cmd.Execute(); err != nil {
			t.Errorf("kasa %s --help: %v", strings.Join(path, " "), err)
			continue
		}
		if !strings.Contains(out.String(), "Usage:") {
			t.Errorf("kasa %s --help:\n%s", strings.Join(path, " "), out.String())
		}
		found.NonInheritedFlags().VisitAll(func(f *pflag.Flag) {
			if f.Usage == "" || !f.Hidden && !strings.Contains(out.String(), "--"+f.Name) {
				t.Errorf("kasa %s: --%s undescribed", strings.Join(path, " "), f.Name)
			}
		})
	}
}

// TestRootErrors: a wrong flag's error says where help is; --version
// prints the build stamps.
func TestRootErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"server", "--no-such-flag"}, "unknown flag: --no-such-flag (see 'kasa server --help')"},
		{[]string{"token", "create", "--ttl", "soon"}, "(see 'kasa token create --help')"},
		{[]string{"no-such-command"}, `unknown command "no-such-command" for "kasa"`},
	} {
		cmd := newRoot(t)
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(tt.args)
		if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("kasa %v: %v, want %q", tt.args, err, tt.want)
		}
		if out.Len() != 0 {
			t.Errorf("kasa %v printed %q: main prints the error, once", tt.args, out.String())
		}
	}
	cmd := newRoot(t)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--version"})
	if err := cmd.Execute(); err != nil || out.String() != version.String()+"\n" {
		t.Errorf("--version: %v %q", err, out.String())
	}
}

// flagSetGetters are cobra's methods that return a command's flag sets.
var flagSetGetters = map[string]bool{"Flags": true, "PersistentFlags": true, "LocalFlags": true, "InheritedFlags": true,
	"NonInheritedFlags": true, "LocalNonPersistentFlags": true}

// byName reports whether call reads or sets a flag by its name: a flag
// set's Get*, Lookup, Changed or Set with a name, or a command's Flag.
func byName(call *ast.CallExpr) (method string, ok bool) {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || len(call.Args) == 0 {
		return "", false
	}
	m := sel.Sel.Name
	if m == "Flag" {
		return m, true // cobra.Command.Flag(name)
	}
	if !strings.HasPrefix(m, "Get") && m != "Lookup" && m != "ShorthandLookup" && m != "Changed" && m != "Set" {
		return "", false
	}
	switch x := sel.X.(type) {
	case *ast.CallExpr: // cmd.Flags().GetString("name")
		if s, ok := x.Fun.(*ast.SelectorExpr); ok && flagSetGetters[s.Sel.Name] {
			return m, true
		}
	case *ast.Ident: // fs := cmd.Flags(); fs.GetString("name"), or a *pflag.FlagSet parameter
		if x.Obj == nil {
			return "", false
		}
		switch d := x.Obj.Decl.(type) {
		case *ast.AssignStmt:
			for _, r := range d.Rhs {
				if c, ok := r.(*ast.CallExpr); ok {
					if s, ok := c.Fun.(*ast.SelectorExpr); ok && (flagSetGetters[s.Sel.Name] || s.Sel.Name == "NewFlagSet") {
						return m, true
					}
				}
			}
		case *ast.Field:
			if strings.Contains(types(d.Type), "FlagSet") {
				return m, true
			}
		case *ast.ValueSpec:
			if strings.Contains(types(d.Type), "FlagSet") {
				return m, true
			}
		}
	}
	return "", false
}

func types(e ast.Expr) string {
	switch t := e.(type) {
	case *ast.StarExpr:
		return types(t.X)
	case *ast.SelectorExpr:
		return types(t.X) + "." + t.Sel.Name
	case *ast.Ident:
		return t.Name
	}
	return ""
}

// TestNoFlagReadByName: no command reads a flag by its name; each binds
// its flags to variables of its options (STYLE.md, point 3), so that no
// command can read a flag it does not define, which pflag answers with an
// error that is easy to drop (or cobra with nil). The setting path for
// every flag at once is pkg/settings.Resolve's.
func TestNoFlagReadByName(t *testing.T) {
	var files int
	for _, dir := range []string{"..", filepath.Join("..", "..", "..", "cmd")} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			files++
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				if m, ok := byName(call); ok {
					name := "a name"
					if lit, ok := call.Args[0].(*ast.BasicLit); ok {
						name, _ = strconv.Unquote(lit.Value)
						name = "--" + name
					}
					t.Errorf("%s: %s reads %s by its name: bind the flag to a variable of the command's options", fset.Position(call.Pos()), m, name)
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if files < 10 {
		t.Fatalf("%d files read: not the CLI's", files)
	}
}
