// Package version holds the build stamps of the kasa binary and the versions
// of the upstream parts it is made of. The Makefile sets the stamps with
// -ldflags -X; an unstamped build says so plainly.
package version

import (
	"bufio"
	"fmt"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/kasa-io/kasa/airgap"
)

// Stamped at link time by the Makefile.
var (
	// Version is kasa's own version, from git describe.
	Version = "v0.0.0-dev"
	// GitCommit is the commit kasa was built from.
	GitCommit = "unknown"
	// Kubernetes is the version of the embedded upstream Kubernetes components.
	Kubernetes = "unknown"
	// BuildDate is the UTC time of the build in RFC 3339 form.
	BuildDate = "unknown"
)

// String is what `kasa --version` prints.
func String() string {
	return fmt.Sprintf("kasa version %s (commit %s, built %s)\nkubernetes %s\ngo %s %s/%s",
		Version, GitCommit, BuildDate, Kubernetes, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// Part is one upstream part of kasa and the version it was built at.
type Part struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// How it travels: "program" (linked into kasa's own program),
	// "bundle" (a program of its own in the bundle) or "image" (a system
	// image in the bundle).
	In string `json:"in"`
}

// Info is everything `kasa version` says.
type Info struct {
	Version    string `json:"version"`
	GitCommit  string `json:"gitCommit"`
	BuildDate  string `json:"buildDate"`
	Kubernetes string `json:"kubernetes"`
	Go         string `json:"go"`
	Platform   string `json:"platform"`
	Parts      []Part `json:"parts"`
}

// linked are the Go modules linked into kasa's program that a user knows
// as parts of a Kubernetes distribution, by the name kasa gives them.
var linked = map[string]string{
	"github.com/k3s-io/kine":                    "kine",
	"github.com/flannel-io/flannel":             "flannel",
	"github.com/cloudnativelabs/kube-router/v2": "kube-router (network policy)",
	"helm.sh/helm/v3":                           "helm",
	"github.com/mattn/go-sqlite3":               "go-sqlite3",
	"go.etcd.io/etcd/client/v3":                 "etcd client",
}

// bundled names the variables of airgap/versions.env: a program of the
// bundle or a system image.
var bundled = map[string]Part{
	"RUNC_VERSION":           {Name: "runc", In: "bundle"},
	"CONTAINERD_VERSION":     {Name: "containerd", In: "bundle"},
	"CNI_PLUGINS_VERSION":    {Name: "cni-plugins", In: "bundle"},
	"CRICTL_VERSION":         {Name: "crictl", In: "bundle"},
	"PAUSE_VERSION":          {Name: "pause", In: "image"},
	"COREDNS_VERSION":        {Name: "coredns", In: "image"},
	"TRAEFIK_VERSION":        {Name: "traefik", In: "image"},
	"METRICS_SERVER_VERSION": {Name: "metrics-server", In: "image"},
}

// Get returns this binary's version and its parts'.
func Get() Info {
	info := Info{
		Version: Version, GitCommit: GitCommit, BuildDate: BuildDate, Kubernetes: Kubernetes,
		Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH,
	}
	info.Parts = append(info.Parts, Part{Name: "kubernetes", Version: Kubernetes, In: "program"})
	if bi, ok := debug.ReadBuildInfo(); ok {
		info.Parts = append(info.Parts, linkedParts(bi)...)
	}
	parts, err := bundleParts(airgap.VersionsEnv)
	if err != nil {
		// versions.env is the build's own file: a bad line is a bug.
		panic(err)
	}
	info.Parts = append(info.Parts, parts...)
	return info
}

func linkedParts(bi *debug.BuildInfo) []Part {
	var parts []Part
	for _, m := range bi.Deps {
		name, ok := linked[m.Path]
		if !ok {
			continue
		}
		v := m.Version
		if m.Replace != nil && m.Replace.Version != "" {
			v = m.Replace.Version
		}
		parts = append(parts, Part{Name: name, Version: v, In: "program"})
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].Name < parts[j].Name })
	return parts
}

// bundleParts reads versions.env: NAME=VALUE lines, comments and blank
// lines. Every variable must be one that bundled names.
func bundleParts(env string) ([]Part, error) {
	var parts []Part
	sc := bufio.NewScanner(strings.NewReader(env))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		p, known := bundled[k]
		if !ok || !known || v == "" {
			return nil, fmt.Errorf("airgap/versions.env line %d: %q is not a known part's NAME=VERSION", n, line)
		}
		p.Version = v
		parts = append(parts, p)
	}
	if len(parts) != len(bundled) {
		return nil, fmt.Errorf("airgap/versions.env names %d parts, not the %d that kasa bundles", len(parts), len(bundled))
	}
	sort.SliceStable(parts, func(i, j int) bool {
		if parts[i].In != parts[j].In {
			return parts[i].In < parts[j].In
		}
		return parts[i].Name < parts[j].Name
	})
	return parts, sc.Err()
}
