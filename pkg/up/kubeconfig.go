package up

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kasa-io/kasa/pkg/fileutil"
)

// MergeKubeconfig adds the cluster of a server's admin kubeconfig (data,
// as kasa server writes it) to the kubeconfig file dst under the name
// context (its cluster, user and context all take that name), with the
// API server at server (https://HOST:6443, the address the server is
// reached at from here). An entry of that name is replaced; the others
// stay. The context becomes the current one when current is set. dst is
// written with mode 0600.
func MergeKubeconfig(dst string, data []byte, server, context string, current bool) error {
	src, err := clientcmd.Load(data)
	if err != nil {
		return fmt.Errorf("the server's kubeconfig: %w", err)
	}
	ctx, ok := src.Contexts[src.CurrentContext]
	if !ok {
		return errors.New("the server's kubeconfig has no current context")
	}
	cluster, user := src.Clusters[ctx.Cluster], src.AuthInfos[ctx.AuthInfo]
	if cluster == nil || user == nil {
		return errors.New("the server's kubeconfig lacks its cluster or user")
	}
	cluster = cluster.DeepCopy()
	cluster.Server = server
	out, err := loadOrNew(dst)
	if err != nil {
		return err
	}
	out.Clusters[context] = cluster
	out.AuthInfos[context] = user.DeepCopy()
	out.Contexts[context] = &clientcmdapi.Context{Cluster: context, AuthInfo: context}
	if current || out.CurrentContext == "" {
		out.CurrentContext = context
	}
	return write(dst, out)
}

// RemoveContext removes the context, cluster and user named context from
// the kubeconfig file dst, and unsets it as the current context.
func RemoveContext(dst, context string) error {
	cfg, err := loadOrNew(dst)
	if err != nil {
		return err
	}
	if _, ok := cfg.Contexts[context]; !ok {
		return nil
	}
	delete(cfg.Contexts, context)
	delete(cfg.Clusters, context)
	delete(cfg.AuthInfos, context)
	if cfg.CurrentContext == context {
		cfg.CurrentContext = ""
	}
	return write(dst, cfg)
}

func loadOrNew(file string) (*clientcmdapi.Config, error) {
	cfg, err := clientcmd.LoadFromFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return clientcmdapi.NewConfig(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", file, err)
	}
	return cfg, nil
}

func write(file string, cfg *clientcmdapi.Config) error {
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	return fileutil.WriteFile(file, data, 0o600)
}
