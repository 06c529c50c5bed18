// Package kubectl runs upstream kubectl inside kasa: as `kasa kubectl ...`
// and when the binary is called through a link named kubectl.
package kubectl

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/plugin"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/kasa-io/kasa/pkg/kubeconfig"
)

// ExitError carries kubectl's exit code once kubectl has printed its error.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("kubectl exited with code %d", e.Code) }

// Env is what kubectl needs from the process environment.
type Env struct {
	LookupEnv func(string) (string, bool)
	Setenv    func(string, string) error
	// Readable reports whether a file can be read by this user.
	Readable func(string) bool
}

// OSEnv is the real process environment.
func OSEnv() Env {
	return Env{
		LookupEnv: os.LookupEnv,
		Setenv:    os.Setenv,
		Readable: func(p string) bool {
			f, err := os.Open(p)
			if err != nil {
				return false
			}
			f.Close()
			return true
		},
	}
}

// NewCommand returns `kasa kubectl`, which hands every argument to kubectl.
func NewCommand(env Env) *cobra.Command {
	return &cobra.Command{
		Use:                "kubectl [flags] [command]",
		Short:              "Run kubectl (upstream, of the cluster's version) against this cluster",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return Run(env, args)
		},
	}
}

// Kubeconfig reads from env what picks the default kubeconfig
// (kubeconfig.DefaultPath): KUBECONFIG and KASA_KUBECONFIG_OUTPUT.
func (e Env) Kubeconfig() kubeconfig.Env {
	path, set := e.LookupEnv("KUBECONFIG")
	output, _ := e.LookupEnv("KASA_KUBECONFIG_OUTPUT")
	return kubeconfig.Env{Kubeconfig: path, KubeconfigSet: set, Output: output, Readable: e.Readable}
}

// Run runs kubectl with args (without the program name) and returns its
// outcome as an error: nil, or an *ExitError after kubectl printed why.
func Run(env Env, args []string) (err error) {
	// kubectl handles interrupts itself (port-forward, exec, watch).
	signal.Reset(os.Interrupt, syscall.SIGTERM)
	if path, ok := kubeconfig.DefaultPath(env.Kubeconfig(), args); ok {
		if err := env.Setenv("KUBECONFIG", path); err != nil {
			return err
		}
	}

	// kubectl reports fatal errors by calling a function that exits; turn
	// that into a returned error so that main alone decides the exit.
	type fatal struct{ code int }
	cmdutil.BehaviorOnFatal(func(msg string, code int) {
		if msg != "" {
			if msg[len(msg)-1] != '\n' {
				msg += "\n"
			}
			fmt.Fprint(os.Stderr, msg)
		}
		panic(fatal{code})
	})
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			err = &ExitError{Code: f.code}
		}
	}()

	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	cmd := kubectlcmd.NewDefaultKubectlCommandWithArgs(kubectlcmd.KubectlOptions{
		PluginHandler: kubectlcmd.NewDefaultPluginHandler(plugin.ValidPluginFilenamePrefixes),
		Arguments:     append([]string{"kubectl"}, args...),
		ConfigFlags: genericclioptions.NewConfigFlags(true).WithDeprecatedPasswordFlag().
			WithDiscoveryBurst(300).WithDiscoveryQPS(50.0).WithWarningPrinter(streams),
		IOStreams: streams,
	})
	cmd.SetArgs(args)
	if err := cli.RunNoErrOutput(cmd); err != nil {
		cmdutil.CheckErr(err)
		return errors.New("kubectl failed") // not reached: CheckErr reports a non-nil error as fatal
	}
	return nil
}
