// Package helmclient makes Helm SDK action configurations for a kubeconfig,
// shared by the server's helm controller and the app catalog commands.
package helmclient

import (
	"fmt"
	"log/slog"

	"helm.sh/helm/v3/pkg/action"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// Options say which cluster and where Helm keeps its caches.
type Options struct {
	// Kubeconfig is the file; empty means client-go's default rules.
	Kubeconfig string
	// Context in the kubeconfig; empty means its current context.
	Context string
	// CacheDir holds the discovery cache; empty means ~/.kube/cache.
	CacheDir string
	Log      *slog.Logger
}

// Getter is the kubeconfig as Helm and kubectl's libraries take it.
func (o Options) Getter(namespace string) *genericclioptions.ConfigFlags {
	flags := genericclioptions.NewConfigFlags(true)
	if o.Kubeconfig != "" {
		flags.KubeConfig = &o.Kubeconfig
	}
	if o.Context != "" {
		flags.Context = &o.Context
	}
	if o.CacheDir != "" {
		flags.CacheDir = &o.CacheDir
	}
	flags.Namespace = &namespace
	return flags
}

// Config is an action configuration whose releases live in namespace,
// stored as Secrets as the helm CLI stores them.
func (o Options) Config(namespace string) (*action.Configuration, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := new(action.Configuration)
	debug := func(format string, v ...any) { log.Debug(fmt.Sprintf(format, v...)) }
	if err := cfg.Init(o.Getter(namespace), namespace, "secret", debug); err != nil {
		return nil, err
	}
	return cfg, nil
}

// MergeValues lays b over a, map by map, as Helm lays values files over
// each other; neither is changed.
func MergeValues(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if bm, ok := v.(map[string]any); ok {
			if am, ok := out[k].(map[string]any); ok {
				out[k] = MergeValues(am, bm)
				continue
			}
		}
		out[k] = v
	}
	return out
}
