package addons

import (
	"slices"
	"testing"
)

func TestAll(t *testing.T) {
	want := []Addon{CoreDNS, ServiceLB, Traefik, LocalStorage, MetricsServer}
	if got := All(); !slices.Equal(got, want) {
		t.Errorf("All() = %v, want %v", got, want)
	}
	// A caller cannot change the list.
	All()[0] = "changed"
	if All()[0] != CoreDNS {
		t.Error("All() returned the package's own slice")
	}
	if got := Names(); got != "coredns, servicelb, traefik, local-storage, metrics-server" {
		t.Errorf("Names() = %q", got)
	}
}

func TestParse(t *testing.T) {
	for _, a := range All() {
		got, err := Parse(string(a))
		if err != nil || got != a {
			t.Errorf("Parse(%q) = %q, %v", a, got, err)
		}
	}
	for _, name := range []string{"", "kafka", "Traefik", " traefik", "rbac", "local_storage"} {
		_, err := Parse(name)
		want := `invalid --disable "` + name + `": the components that can be disabled are coredns, servicelb, traefik, local-storage, metrics-server`
		if err == nil || err.Error() != want {
			t.Errorf("Parse(%q): got %v, want %s", name, err, want)
		}
	}
}

func TestManifest(t *testing.T) {
	for a, want := range map[Addon]string{
		CoreDNS: "coredns.yaml", ServiceLB: "", Traefik: "traefik.yaml",
		LocalStorage: "local-storage.yaml", MetricsServer: "metrics-server.yaml", "kafka": "",
	} {
		if got := a.Manifest(); got != want {
			t.Errorf("%s.Manifest() = %q, want %q", a, got, want)
		}
	}
	if got := CoreManifests(); !slices.Equal(got, []string{"rbac.yaml"}) {
		t.Errorf("CoreManifests() = %v", got)
	}
}

func TestSet(t *testing.T) {
	var zero Set
	if zero.Has(Traefik) || len(zero.List()) != 0 {
		t.Error("the zero Set is not empty")
	}
	s := NewSet(MetricsServer, CoreDNS, MetricsServer)
	if !s.Has(CoreDNS) || !s.Has(MetricsServer) || s.Has(Traefik) {
		t.Errorf("set %v", s)
	}
	s.Add(Traefik)
	if got := s.List(); !slices.Equal(got, []Addon{CoreDNS, Traefik, MetricsServer}) {
		t.Errorf("List() = %v, want the order of All", got)
	}
}
