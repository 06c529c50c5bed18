// Package charts holds the Helm charts written for kasa and embedded in its
// binary: the system charts the server deploys through HelmChart resources
// (traefik) and, later, the app catalog. A HelmChart whose chart names one
// of them, with no repo, is installed from here: no network needed.
package charts

import (
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
)

//go:embed all:traefik
var files embed.FS

// Names lists the embedded charts.
func Names() []string {
	entries, _ := fs.ReadDir(files, ".")
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names
}

// Load returns the embedded chart of that name.
func Load(name string) (*chart.Chart, error) {
	if !slices.Contains(Names(), name) {
		return nil, fmt.Errorf("no chart %q embedded in kasa (there are: %v)", name, Names())
	}
	var bufs []*loader.BufferedFile
	err := fs.WalkDir(files, name, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := strings.CutPrefix(p, name+"/")
		bufs = append(bufs, &loader.BufferedFile{Name: rel, Data: data})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return loader.LoadFiles(bufs)
}
