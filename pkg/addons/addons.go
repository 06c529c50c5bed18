// Package addons is the one list of kasa's packaged add-ons: the names that
// `--disable` takes, the manifest each one deploys from manifests/, and the
// manifests that every server deploys whatever is disabled. Every user of
// `--disable` asks a Set of this package, never a string.
package addons

import (
	"fmt"
	"slices"
	"strings"
)

// Addon is a packaged add-on, by the name --disable takes.
type Addon string

// The add-ons, by the names k3s gives them.
const (
	CoreDNS       Addon = "coredns"
	ServiceLB     Addon = "servicelb"
	Traefik       Addon = "traefik"
	LocalStorage  Addon = "local-storage"
	MetricsServer Addon = "metrics-server"
)

// all is the list, in the order the flag's help and errors show it.
var all = []struct {
	addon Addon
	// manifest is the template in manifests/ that deploys the add-on;
	// empty when it runs in kasa's own process (ServiceLB).
	manifest string
}{
	{CoreDNS, "coredns.yaml"},
	{ServiceLB, ""},
	{Traefik, "traefik.yaml"},
	{LocalStorage, "local-storage.yaml"},
	{MetricsServer, "metrics-server.yaml"},
}

// coreManifests are deployed whatever --disable says: kasa's own parts
// need them.
var coreManifests = []string{"rbac.yaml"}

// All returns every add-on, in the order the flag's help shows them.
func All() []Addon {
	list := make([]Addon, len(all))
	for i, e := range all {
		list[i] = e.addon
	}
	return list
}

// Names returns the add-ons' names joined with ", ", as the flag's help
// and errors show them.
func Names() string {
	names := make([]string, len(all))
	for i, e := range all {
		names[i] = string(e.addon)
	}
	return strings.Join(names, ", ")
}

// CoreManifests returns the manifests that are not add-ons and are always
// deployed.
func CoreManifests() []string { return slices.Clone(coreManifests) }

// Parse returns the add-on named name, or an error for --disable that lists
// the names it takes.
func Parse(name string) (Addon, error) {
	for _, e := range all {
		if string(e.addon) == name {
			return e.addon, nil
		}
	}
	return "", fmt.Errorf("invalid --disable %q: the components that can be disabled are %s", name, Names())
}

// Manifest returns the file in manifests/ that deploys a, or "" when a is
// not deployed from a manifest (ServiceLB runs in kasa's process) or is not
// an add-on.
func (a Addon) Manifest() string {
	for _, e := range all {
		if e.addon == a {
			return e.manifest
		}
	}
	return ""
}

// String returns the add-on's name.
func (a Addon) String() string { return string(a) }

// Set is a set of add-ons, such as the disabled ones. The zero Set is empty
// and ready to read; Add needs one made by NewSet (or a map literal).
type Set map[Addon]struct{}

// NewSet returns a set holding list.
func NewSet(list ...Addon) Set {
	s := make(Set, len(list))
	for _, a := range list {
		s.Add(a)
	}
	return s
}

// Add puts a into s.
func (s Set) Add(a Addon) { s[a] = struct{}{} }

// Has reports whether s holds a.
func (s Set) Has(a Addon) bool {
	_, ok := s[a]
	return ok
}

// List returns the add-ons of s in the order of All.
func (s Set) List() []Addon {
	var list []Addon
	for _, a := range All() {
		if s.Has(a) {
			list = append(list, a)
		}
	}
	return list
}
