package charts

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
)

// render returns the chart's manifests by template name.
func render(t *testing.T, name string, vals map[string]any) map[string]string {
	t.Helper()
	ch, err := Load(name)
	if err != nil {
		t.Fatal(err)
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: name, Namespace: "kube-system", IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestNames(t *testing.T) {
	if got := Names(); len(got) == 0 || got[0] != "traefik" {
		t.Errorf("Names() = %v", got)
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
