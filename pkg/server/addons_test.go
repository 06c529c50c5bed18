package server

import (
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kasa-io/kasa/pkg/addons"
	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/deploy"
)

const testKubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
users: [{name: u, user: {}}]
current-context: c
`

// TestServerControllers: the add-ons not disabled are written into the
// manifests folder, the disabled ones are taken out of it and handed to
// the deployer to delete, rbac.yaml is written whatever is disabled, and
// ServiceLB runs unless disabled.
func TestServerControllers(t *testing.T) {
	p := NewPaths(t.TempDir())
	if err := os.MkdirAll(p.Cred(""), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.Cred("admin.kubeconfig"), []byte(testKubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Server{ClusterDNS: netip.MustParseAddr("10.43.0.10"), ClusterDomain: "cluster.local"}
	c := &certs{KubeletBundle: []byte("-----BEGIN CERTIFICATE-----\n")}
	log := slog.New(slog.DiscardHandler)

	run := func(disable addons.Set) (files []string, remove []string, names []string) {
		t.Helper()
		cfg.Disable = disable
		list, err := serverControllers(cfg, p, c, log)
		if err != nil {
			t.Fatal(err)
		}
		entries, err := os.ReadDir(p.Manifests())
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			files = append(files, e.Name())
		}
		for _, comp := range list {
			names = append(names, comp.Name())
			if d, ok := comp.(*deploy.Deployer); ok {
				remove = slices.Sorted(maps.Keys(d.Remove))
			}
		}
		return files, remove, names
	}
	check := func(what string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", what, got, want)
		}
	}

	files, remove, names := run(nil)
	check("files", files, []string{"coredns.yaml", "local-storage.yaml", "metrics-server.yaml", "rbac.yaml", "traefik.yaml"})
	check("removed", remove, nil)
	check("components", names, []string{"helm-controller", "deploy", "servicelb"})

	files, remove, names = run(addons.NewSet(addons.Traefik, addons.ServiceLB, addons.CoreDNS))
	check("files", files, []string{"local-storage.yaml", "metrics-server.yaml", "rbac.yaml"})
	check("removed", remove, []string{"coredns", "traefik"})
	check("components", names, []string{"helm-controller", "deploy"})

	files, _, _ = run(addons.NewSet(addons.All()...))
	check("files", files, []string{"rbac.yaml"})
	data, err := os.ReadFile(filepath.Join(p.Manifests(), "rbac.yaml"))
	if err != nil || !strings.Contains(string(data), "ClusterRole") {
		t.Errorf("rbac.yaml: %v", err)
	}
}
