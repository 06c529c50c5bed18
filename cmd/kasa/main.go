// Command kasa is a multi-call binary: called as kubectl (through a link) it
// is kubectl; otherwise it is the kasa command. main only dispatches and turns
// the returned error into an exit code.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/kasa-io/kasa/pkg/cli/kubectl"
	"github.com/kasa-io/kasa/pkg/cli/root"
	clitools "github.com/kasa-io/kasa/pkg/cli/tools"
)

// tools are the programs this binary becomes when called by their name.
var tools = map[string]func(args []string) error{
	"kubectl": func(args []string) error { return kubectl.Run(kubectl.OSEnv(), args) },
	"crictl":  bundled("crictl"),
	"ctr":     bundled("ctr"),
}

func bundled(name string) func([]string) error {
	t, _ := clitools.Lookup(name)
	return func(args []string) error { return clitools.Exec(t, args) }
}

func main() {
	os.Exit(run(os.Args))
}

func run(argv []string) int {
	var err error
	// kubectl finds plugins by name: kubectl install mysql runs
	// kubectl-install mysql, which is kasa install mysql.
	if strings.HasPrefix(filepath.Base(argv[0]), "kubectl-install") {
		argv = append([]string{argv[0], "install"}, argv[1:]...)
	}
	if tool, ok := tools[filepath.Base(argv[0])]; ok {
		err = tool(argv[1:])
	} else {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		// Upstream packages register flags of their own (--version among
		// them) on the global flag set at init, and cobra would merge them
		// into kasa's commands; kasa's commands define every flag they take.
		pflag.CommandLine = pflag.NewFlagSet(argv[0], pflag.ContinueOnError)
		cmd := root.NewCommand()
		cmd.SetArgs(argv[1:])
		err = cmd.ExecuteContext(ctx)
	}
	var exit *kubectl.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.Code
	default:
		fmt.Fprintf(os.Stderr, "kasa: %v\n", err)
		return 1
	}
}
