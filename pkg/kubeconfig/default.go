package kubeconfig

import (
	"os"
	"strings"

	"github.com/kasa-io/kasa/pkg/config"
)

// Env is the part of the process environment that picks the default
// kubeconfig. Only the command line reads the environment: it fills Env
// in and passes it down.
type Env struct {
	// Kubeconfig is the value of KUBECONFIG, and KubeconfigSet whether it
	// is set: kubectl and client-go read that file then.
	Kubeconfig    string
	KubeconfigSet bool
	// Output is KASA_KUBECONFIG_OUTPUT (the server's --write-kubeconfig):
	// where the server writes its admin kubeconfig; empty means
	// config.DefaultKubeconfig.
	Output string
	// Readable reports whether this user can read a file; nil opens the
	// file to see.
	Readable func(string) bool
}

// DefaultPath picks the kubeconfig that kubectl and kasa's commands read
// when neither a --kubeconfig in args (before any "--") nor KUBECONFIG
// names one: the server's admin kubeconfig when this user can read it. It
// returns false when the caller should keep client-go's own default
// (KUBECONFIG, else ~/.kube/config).
func DefaultPath(env Env, args []string) (string, bool) {
	if env.KubeconfigSet {
		return "", false
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "--kubeconfig" || strings.HasPrefix(a, "--kubeconfig=") {
			return "", false
		}
	}
	path := config.DefaultKubeconfig
	if env.Output != "" {
		path = env.Output
	}
	readable := env.Readable
	if readable == nil {
		readable = canRead
	}
	if readable(path) {
		return path, true
	}
	return "", false
}

// canRead reports whether this user can open file for reading.
func canRead(file string) bool {
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	f.Close()
	return true
}
