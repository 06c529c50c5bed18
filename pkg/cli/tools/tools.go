// Package tools runs the upstream command-line tools that ship in kasa's
// bundle (crictl, ctr), pointed at this node's containerd: as `kasa crictl`,
// `kasa ctr`, and when the binary is called through a link of that name.
//
// Every argument is the tool's, so kasa reads none of its own flags there:
// the data dir, where the bundle is unpacked, comes from KASA_DATA_DIR, else
// the config files' data-dir (KASA_CONFIG_FILE, or /etc/kasa/config.yaml and
// config.yaml.d), else /var/lib/kasa (settings.ResolveDataDir).
package tools

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kasa-io/kasa/pkg/bundle"
	"github.com/kasa-io/kasa/pkg/datadir"
	"github.com/kasa-io/kasa/pkg/settings"
)

// Tool is one bundled program and the environment that points it at kasa.
type Tool struct {
	Name  string
	Short string
	// Env returns variables to set unless the user set them already.
	Env func(dataDir string) map[string]string
}

// Tools are the programs kasa runs for the user.
var Tools = []Tool{
	{
		Name:  "crictl",
		Short: "Run crictl against this node's containerd",
		Env: func(dataDir string) map[string]string {
			sock := "unix://" + datadir.MachineRun().ContainerdSocket()
			return map[string]string{
				"CONTAINER_RUNTIME_ENDPOINT": sock,
				"IMAGE_SERVICE_ENDPOINT":     sock,
				"CRI_CONFIG_FILE":            datadir.New(dataDir).Agent().CrictlConfig(),
			}
		},
	},
	{
		Name:  "ctr",
		Short: "Run ctr against this node's containerd (namespace k8s.io)",
		Env: func(string) map[string]string {
			return map[string]string{
				"CONTAINERD_ADDRESS":   datadir.MachineRun().ContainerdSocket(),
				"CONTAINERD_NAMESPACE": "k8s.io",
			}
		},
	},
}

// Lookup returns the tool of a name.
func Lookup(name string) (Tool, bool) {
	for _, t := range Tools {
		if t.Name == name {
			return t, true
		}
	}
	return Tool{}, false
}

// NewCommand returns `kasa NAME`, handing every argument to the tool.
func NewCommand(t Tool) *cobra.Command {
	return &cobra.Command{
		Use:   t.Name + " [args]",
		Short: t.Short,
		Long: t.Short + ".\n\nEvery argument is " + t.Name + "'s: kasa takes its data dir, where the tool is unpacked, " +
			"from KASA_DATA_DIR, else from data-dir in the config file (KASA_CONFIG_FILE, or " + settings.DefaultConfigFile +
			" and its config.yaml.d), else " + settings.DefaultDataDir + ".",
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			return Exec(t, args)
		},
	}
}

// Exec replaces this process by the tool, with args. The data dir, where
// the bundle is unpacked, is the node's (settings.ResolveDataDir: the
// environment and the config files, never args).
func Exec(t Tool, args []string) error {
	dataDir, err := settings.ResolveDataDir(settings.Sources{LookupEnv: os.LookupEnv})
	if err != nil {
		return fmt.Errorf("%s: %w", t.Name, err)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := bundle.Locate(exe, dataDir)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("%s: cannot unpack kasa's tools into %s: run as root", t.Name, dataDir)
		}
		return err
	}
	env := os.Environ()
	for k, v := range t.Env(dataDir) {
		if _, set := os.LookupEnv(k); !set {
			env = append(env, k+"="+v)
		}
	}
	bin := filepath.Join(dir, "bin", t.Name)
	return syscall.Exec(bin, append([]string{t.Name}, args...), env)
}
