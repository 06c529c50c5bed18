package server

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kasa-io/kasa/manifests"
	"github.com/kasa-io/kasa/pkg/component"
	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/deploy"
	"github.com/kasa-io/kasa/pkg/fileutil"
	"github.com/kasa-io/kasa/pkg/helmcontroller"
	"github.com/kasa-io/kasa/pkg/servicelb"
)

// The system images, built from source into the bundle (airgap/versions.env).
const (
	CoreDNSImage       = "kasa.local/coredns:1.15.0"
	MetricsServerImage = "kasa.local/metrics-server:0.8.0"
)

// addons writes the system add-ons that are not disabled into the manifests
// folder (and removes those that are), and returns the component that
// applies the folder.
func addons(cfg *config.Server, p Paths, c *certs, log *slog.Logger) (*deploy.Deployer, error) {
	dir := p.Manifests()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(c.KubeletBundle)
	values := manifests.Values{
		ClusterDNS:         cfg.ClusterDNS.String(),
		ClusterDomain:      cfg.ClusterDomain,
		CoreDNSImage:       CoreDNSImage,
		MetricsServerImage: MetricsServerImage,
		KubeletCA:          base64.StdEncoding.EncodeToString(c.KubeletBundle),
		KubeletCAHash:      hex.EncodeToString(sum[:8]),
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
	retired, err := manifests.Retired()
	if err != nil {
		return nil, err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", p.Cred("admin.kubeconfig"))
	if err != nil {
		return nil, err
	}
	return &deploy.Deployer{Dir: dir, RESTConfig: rc, Remove: remove, Retired: retired, Log: log.With("component", "deploy")}, nil
}

// serverControllers are the controllers the server runs in-process: the
// helm controller (before the manifests, some of which are HelmCharts),
// the manifests folder, and ServiceLB unless disabled.
func serverControllers(cfg *config.Server, p Paths, c *certs, log *slog.Logger) ([]component.Component, error) {
	deployer, err := addons(cfg, p, c, log)
	if err != nil {
		return nil, err
	}
	helmDir := p.join("helm")
	if err := os.MkdirAll(helmDir, 0o700); err != nil {
		return nil, err
	}
	list := []component.Component{
		&helmcontroller.Controller{
			RESTConfig: deployer.RESTConfig, Kubeconfig: p.Cred("admin.kubeconfig"), StateDir: helmDir,
			Log: log.With("component", "helm-controller"),
		},
		deployer,
	}
	if !slices.Contains(cfg.Disable, "servicelb") {
		cs, err := kubernetes.NewForConfig(deployer.RESTConfig)
		if err != nil {
			return nil, err
		}
		list = append(list, &servicelb.Controller{Client: cs, Log: log.With("component", "servicelb")})
	}
	return list, nil
}
