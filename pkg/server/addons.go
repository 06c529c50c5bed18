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
	if err := writeAddons(cfg, p, c); err != nil {
		return nil, err
	}
	values := addonValues(cfg, c)
	remove := map[string][]byte{}
	for _, a := range addons.All() {
		file := a.Manifest()
		if file == "" || !cfg.Disable.Has(a) {
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

// addonValues are what the add-ons' manifests are rendered with.
func addonValues(cfg *config.Server, c *certs) manifests.Values {
	sum := sha256.Sum256(c.KubeletBundle)
	return manifests.Values{
		ClusterDNS:         cfg.ClusterDNS.String(),
		ClusterDomain:      cfg.ClusterDomain,
		CoreDNSImage:       CoreDNSImage,
		MetricsServerImage: MetricsServerImage,
		KubeletCA:          base64.StdEncoding.EncodeToString(c.KubeletBundle),
		KubeletCAHash:      hex.EncodeToString(sum[:8]),
	}
}

// writeAddons writes the manifests of the core add-ons and of those not
// disabled into the manifests folder, which the deploy controller applies
// when a file changes: at start, and when the kubelet CA that
// metrics-server trusts changes (kasa certificate rotate-ca).
func writeAddons(cfg *config.Server, p Paths, c *certs) error {
	values := addonValues(cfg, c)
	files := addons.CoreManifests()
	for _, a := range addons.All() {
		if file := a.Manifest(); file != "" && !cfg.Disable.Has(a) {
			files = append(files, file)
		}
	}
	for _, file := range files {
		if err := writeManifest(p.Manifests(), file, values); err != nil {
			return err
		}
	}
	return nil
}

// writeManifest renders a file of manifests/ into dir.
func writeManifest(dir, file string, values manifests.Values) error {
	data, err := manifests.Render(file, values)
	if err != nil {
		return err
	}
	return fileutil.WriteFile(filepath.Join(dir, file), data, 0o600)
}
