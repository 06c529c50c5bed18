// Package charts holds the Helm charts written for kasa and embedded in its
// binary: the system charts the server deploys through HelmChart resources
// (traefik) and the app catalog that `kasa install` draws from (mysql,
// postgresql, wordpress, ...). A HelmChart whose chart names one of them,
// with no repo, is installed from here: no network needed. README.md lists
// the conventions the catalog's charts keep.
package charts

import (
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
)

//go:embed all:traefik all:mysql all:mariadb all:postgresql all:redis all:kafka all:tomcat all:nginx all:wordpress
var files embed.FS

// Annotations and labels of the catalog's charts.
const (
	// CatalogAnnotation marks a chart of the app catalog (Chart.yaml).
	CatalogAnnotation = "kasa.io/catalog"
	// HTTPAnnotation marks a catalog app that serves HTTP and can take an
	// Ingress (ingress.host).
	HTTPAnnotation = "kasa.io/http"
	// CredentialsLabel marks the Secret <release>-auth that holds an app's
	// generated passwords.
	CredentialsLabel = "kasa.io/credentials"
	// DependencyScheme is the repository of a Chart.yaml dependency that
	// is another embedded chart: kasa://<name>.
	DependencyScheme = "kasa://"
)

// Info describes one app of the catalog.
type Info struct {
	Name        string
	Version     string // of the chart
	AppVersion  string // the default image tag
	Description string
	// HTTP is true when the app serves HTTP and takes an Ingress.
	HTTP bool
}

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

// Catalog lists the apps of the catalog, sorted by name: the embedded
// charts annotated kasa.io/catalog, not the system charts.
func Catalog() ([]Info, error) {
	var apps []Info
	for _, name := range Names() {
		ch, err := Load(name)
		if err != nil {
			return nil, err
		}
		md := ch.Metadata
		if md.Annotations[CatalogAnnotation] != "true" {
			continue
		}
		apps = append(apps, Info{
			Name:        md.Name,
			Version:     md.Version,
			AppVersion:  md.AppVersion,
			Description: md.Description,
			HTTP:        md.Annotations[HTTPAnnotation] == "true",
		})
	}
	slices.SortFunc(apps, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return apps, nil
}

// Load returns the embedded chart of that name, with the embedded charts
// it depends on: a dependency in Chart.yaml whose repository is
// kasa://<name> is that embedded chart (wordpress uses mysql so). Each call
// returns a fresh chart, which Helm may change while it installs it.
func Load(name string) (*chart.Chart, error) {
	return load(name, nil)
}

// load loads one chart; via lists the charts that depend on it, outermost
// first, to catch a chart that depends on itself.
func load(name string, via []string) (*chart.Chart, error) {
	if !slices.Contains(Names(), name) {
		return nil, fmt.Errorf("no chart %q embedded in kasa (there are: %v)", name, Names())
	}
	if slices.Contains(via, name) {
		return nil, fmt.Errorf("embedded chart %s depends on itself (%s -> %s)", name, strings.Join(via, " -> "), name)
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
	ch, err := loader.LoadFiles(bufs)
	if err != nil {
		return nil, fmt.Errorf("embedded chart %s: %w", name, err)
	}
	via = append(slices.Clone(via), name)
	for _, dep := range ch.Metadata.Dependencies {
		sub, err := loadDependency(name, dep, via)
		if err != nil {
			return nil, err
		}
		ch.AddDependency(sub)
	}
	return ch, nil
}

// loadDependency loads the embedded chart that a dependency of chart
// parent names, and checks that it is the one asked for.
func loadDependency(parent string, dep *chart.Dependency, via []string) (*chart.Chart, error) {
	embedded, ok := strings.CutPrefix(dep.Repository, DependencyScheme)
	if !ok {
		return nil, fmt.Errorf("embedded chart %s: dependency %s comes from %q; an embedded chart can only depend on another one, as repository %s<name>",
			parent, dep.Name, dep.Repository, DependencyScheme)
	}
	sub, err := load(embedded, via)
	if err != nil {
		return nil, fmt.Errorf("embedded chart %s: dependency %s: %w", parent, dep.Name, err)
	}
	if sub.Metadata.Name != dep.Name {
		return nil, fmt.Errorf("embedded chart %s: dependency %s: %s%s is the chart %s", parent, dep.Name, DependencyScheme, embedded, sub.Metadata.Name)
	}
	if !chartutil.IsCompatibleRange(dep.Version, sub.Metadata.Version) {
		return nil, fmt.Errorf("embedded chart %s: dependency %s wants version %s, the embedded one is %s", parent, dep.Name, dep.Version, sub.Metadata.Version)
	}
	return sub, nil
}
