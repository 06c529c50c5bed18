package server

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/kasa-io/kasa/manifests"
	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/deploy"
	"github.com/kasa-io/kasa/pkg/fileutil"
)

// CoreDNSImage is built from source into the bundle.
const CoreDNSImage = "kasa.local/coredns:1.15.0"

// addons writes the system add-ons that are not disabled into the manifests
// folder (and removes those that are), and returns the component that
// applies the folder.
func addons(cfg *config.Server, p Paths, log *slog.Logger) (*deploy.Deployer, error) {
	dir := p.Manifests()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	values := manifests.Values{
		ClusterDNS:    cfg.ClusterDNS.String(),
		ClusterDomain: cfg.ClusterDomain,
		CoreDNSImage:  CoreDNSImage,
	}
	remove := map[string][]byte{}
	for name, file := range manifests.Components {
		target := filepath.Join(dir, file)
		data, err := manifests.Render(name, values)
		if err != nil {
			return nil, err
		}
		if slices.Contains(cfg.Disable, name) && !slices.Contains(manifests.Core, name) {
			if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
			remove[name] = data
			continue
		}
		if err := fileutil.WriteFile(target, data, 0o600); err != nil {
			return nil, err
		}
	}
	rc, err := clientcmd.BuildConfigFromFlags("", p.Cred("admin.kubeconfig"))
	if err != nil {
		return nil, err
	}
	return &deploy.Deployer{Dir: dir, RESTConfig: rc, Remove: remove, Log: log.With("component", "deploy")}, nil
}
