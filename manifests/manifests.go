// Package manifests holds the system add-ons that kasa deploys, as YAML
// templates embedded in the binary. Which file belongs to which add-on is
// pkg/addons' list.
package manifests

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
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

// Render returns the manifest file (an add-on's, addons.Addon.Manifest, or
// one of addons.CoreManifests) with the values filled in.
func Render(name string, v Values) ([]byte, error) {
	// Stat, not ParseFS, sees the name: ParseFS would take it as a pattern.
	if _, err := fs.Stat(files, name); err != nil || name == retired {
		return nil, fmt.Errorf("no manifest %q", name)
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
func Retired() ([]byte, error) { return files.ReadFile(retired) }

// retired is the file of Retired, not a template.
const retired = "retired.yaml"
