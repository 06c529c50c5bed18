package charts

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
)

// render returns the chart's manifests by template name, as the release
// of the chart's name in kube-system.
func render(t *testing.T, name string, vals map[string]any) map[string]string {
	t.Helper()
	out, err := renderRelease(name, release{name: name, namespace: "kube-system"}, vals)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// release says how renderRelease renders a chart.
type release struct {
	name, namespace string
	// upgrade renders an upgrade rather than an install.
	upgrade bool
	// cluster answers the templates' lookups; nil: they find nothing, as
	// when Helm renders without a cluster.
	cluster engine.ClientProvider
}

// renderRelease renders a chart as Helm does on install or upgrade: the
// dependencies its conditions turn off removed, the values coalesced and
// checked against the schemas, then the templates rendered.
func renderRelease(name string, r release, vals map[string]any) (map[string]string, error) {
	ch, err := Load(name)
	if err != nil {
		return nil, err
	}
	if err := chartutil.ProcessDependenciesWithMerge(ch, vals); err != nil {
		return nil, err
	}
	opts := chartutil.ReleaseOptions{Name: r.name, Namespace: r.namespace, IsInstall: !r.upgrade, IsUpgrade: r.upgrade, Revision: 1}
	rv, err := chartutil.ToRenderValues(ch, vals, opts, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	if r.cluster != nil {
		return engine.RenderWithClientProvider(ch, rv, r.cluster)
	}
	return engine.Render(ch, rv)
}

func TestNames(t *testing.T) {
	if got := Names(); !slices.Contains(got, "traefik") || !slices.IsSorted(got) {
		t.Errorf("Names() = %v, want a sorted list with traefik", got)
	}
	if _, err := Load("no-such-chart"); err == nil || !strings.Contains(err.Error(), "traefik") {
		t.Errorf("an unknown chart: %v (the error should list the charts there are)", err)
	}
}

func TestTraefikDefaults(t *testing.T) {
	out := render(t, "traefik", nil)
	all := strings.Join(slices.Collect(maps.Values(out)), "\n---\n")
	for _, want := range []string{
		"kind: Deployment", "image: \"kasa.local/traefik:3.6.12\"",
		"type: LoadBalancer", "port: 80", "port: 443",
		"ingressclass.kubernetes.io/is-default-class: \"true\"", "controller: traefik.io/ingress-controller",
		"--providers.kubernetesingress.ingressEndpoint.publishedService=kube-system/traefik",
		"--global.sendAnonymousUsage=false",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("the default render has no %q", want)
		}
	}
	if strings.Contains(all, "kind: ConfigMap") || strings.Contains(all, "--providers.file") {
		t.Error("a default certificate is configured though none was given")
	}
}

func TestTraefikDefaultCertificate(t *testing.T) {
	out := render(t, "traefik", map[string]any{"tls": map[string]any{"defaultCertificate": map[string]any{"secretName": "wildcard"}}})
	all := strings.Join(slices.Collect(maps.Values(out)), "\n---\n")
	for _, want := range []string{"kind: ConfigMap", "--providers.file.filename=/config/dynamic.yaml", "secretName: wildcard"} {
		if !strings.Contains(all, want) {
			t.Errorf("with a default certificate, the render has no %q", want)
		}
	}
}
