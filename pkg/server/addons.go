package server

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kasa-io/kasa/manifests"
	"github.com/kasa-io/kasa/pkg/addons"
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

// deployAddons writes the system add-ons that are not disabled into the
// manifests folder (and removes those that are), and returns the component
// that applies the folder.
func deployAddons(cfg *config.Server, p Paths, c *certs, log *slog.Logger) (*deploy.Deployer, error) {
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
	for _, file := range addons.CoreManifests() {
		if err := writeManifest(dir, file, values); err != nil {
			return nil, err
		}
	}
	remove := map[string][]byte{}
	for _, a := range addons.All() {
		file := a.Manifest()
		if file == "" {
			continue
		}
		if !cfg.Disable.Has(a) {
			if err := writeManifest(dir, file, values); err != nil {
				return nil, err
			}
			continue
		}
		if err := os.Remove(filepath.Join(dir, file)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		data, err := manifests.Render(file, values)
		if err != nil {
			return nil, err
		}
		remove[a.String()] = data
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
	deployer, err := deployAddons(cfg, p, c, log)
	if err != nil {
		return nil, err
	}
	helmDir := p.Helm()
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
	if !cfg.Disable.Has(addons.ServiceLB) {
		cs, err := kubernetes.NewForConfig(deployer.RESTConfig)
		if err != nil {
			return nil, err
		}
		list = append(list, &servicelb.Controller{Client: cs, Log: log.With("component", "servicelb")})
	}
	return list, nil
}

// writeManifest renders a file of manifests/ into dir.
func writeManifest(dir, file string, values manifests.Values) error {
	data, err := manifests.Render(file, values)
	if err != nil {
		return err
	}
	return fileutil.WriteFile(filepath.Join(dir, file), data, 0o600)
}
