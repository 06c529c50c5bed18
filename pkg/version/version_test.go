package version

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/kasa-io/kasa/airgap"
)

// The build's own versions.env names every bundled part once.
func TestBundlePartsOfTheBuild(t *testing.T) {
	parts, err := bundleParts(airgap.VersionsEnv)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, p := range parts {
		if p.Version == "" || seen[p.Name] {
			t.Errorf("part %+v: empty or twice", p)
		}
		seen[p.Name] = true
	}
	for _, want := range []string{"runc", "containerd", "cni-plugins", "crictl", "pause", "coredns", "traefik", "metrics-server"} {
		if !seen[want] {
			t.Errorf("no version for %s in %+v", want, parts)
		}
	}
}

func TestBundlePartsRefusesWhatItDoesNotKnow(t *testing.T) {
	for _, env := range []string{
		"RUNC_VERSION=v1\nFROB_VERSION=v2\n",
		"RUNC_VERSION\n",
		"RUNC_VERSION=\n",
		"RUNC_VERSION=v1\n", // the others missing
	} {
		if _, err := bundleParts(env); err == nil {
			t.Errorf("%q was taken", env)
		}
	}
}

func TestLinkedParts(t *testing.T) {
	bi := &debug.BuildInfo{Deps: []*debug.Module{
		{Path: "github.com/k3s-io/kine", Version: "v0.17.5"},
		{Path: "github.com/flannel-io/flannel", Version: "v0.1.0", Replace: &debug.Module{Path: "x", Version: "v0.2.0"}},
		{Path: "example.com/other", Version: "v1"},
	}}
	got := linkedParts(bi)
	if len(got) != 2 || got[0].Name != "flannel" || got[0].Version != "v0.2.0" || got[1].Name != "kine" || got[1].Version != "v0.17.5" {
		t.Errorf("linkedParts: %+v", got)
	}
	if s := String(); !strings.Contains(s, "kasa version") {
		t.Errorf("String: %q", s)
	}
}
