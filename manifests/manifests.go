// Package manifests holds the system add-ons that kasa deploys, as YAML
// templates embedded in the binary.
package manifests

import (
	"bytes"
	"embed"
	"fmt"
	"text/template"
)

//go:embed *.yaml
var files embed.FS

// Values fill the templates.
type Values struct {
	ClusterDNS         string
	ClusterDomain      string
	CoreDNSImage       string
	MetricsServerImage string
	// KubeletCA is the PEM of the CAs that sign kubelets' serving
	// certificates, in base64; KubeletCAHash a short hash of it.
	KubeletCA     string
	KubeletCAHash string
}

// Components are the add-ons, by the names --disable takes, with their files.
var Components = map[string]string{
	"coredns":        "coredns.yaml",
	"local-storage":  "local-storage.yaml",
	"metrics-server": "metrics-server.yaml",
	"rbac":           "rbac.yaml",
	"traefik":        "traefik.yaml",
}

// Core are the components that cannot be disabled: kasa's own parts need them.
var Core = []string{"rbac"}

// Render returns the manifest of a component with the values filled in.
func Render(component string, v Values) ([]byte, error) {
	name, ok := Components[component]
	if !ok {
		return nil, fmt.Errorf("no manifest for component %q", component)
	}
	t, err := template.New(name).Option("missingkey=error").ParseFS(files, name)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, v); err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// Retired returns the objects of earlier kasa versions that the server
// deletes at every start (retired.yaml).
func Retired() ([]byte, error) { return files.ReadFile("retired.yaml") }
