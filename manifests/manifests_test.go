package manifests

import (
	"bytes"
	"testing"

	"io/fs"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/kasa-io/kasa/pkg/addons"
)

func TestRenderCoreDNS(t *testing.T) {
	b, err := Render(addons.CoreDNS.Manifest(), Values{ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local", CoreDNSImage: "kasa.local/coredns:1.15.0"})
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	kinds := map[string]bool{}
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			break
		}
		kinds[u.GetKind()] = true
		if u.GetKind() == "Service" {
			ip, _, _ := unstructured.NestedString(u.Object, "spec", "clusterIP")
			if ip != "10.43.0.10" {
				t.Errorf("kube-dns clusterIP %q", ip)
			}
		}
	}
	for _, k := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "Service"} {
		if !kinds[k] {
			t.Errorf("no %s in the manifest", k)
		}
	}
	if !bytes.Contains(b, []byte("kubernetes cluster.local in-addr.arpa")) {
		t.Error("the Corefile does not serve the cluster domain")
	}
	if _, err := Render("no-such-addon", Values{}); err == nil {
		t.Error("an unknown component rendered")
	}
}

// TestAddonFiles: every add-on of pkg/addons that deploys from a manifest
// has its file here, and every template here is an add-on's or a core
// manifest, so the list and the folder cannot drift apart.
func TestAddonFiles(t *testing.T) {
	listed := addons.CoreManifests()
	for _, a := range addons.All() {
		if f := a.Manifest(); f != "" {
			listed = append(listed, f)
		}
	}
	for _, f := range listed {
		if _, err := Render(f, Values{}); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	embedded, err := fs.Glob(files, "*")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range embedded {
		if f != retired && !slices.Contains(listed, f) {
			t.Errorf("%s is embedded but neither an add-on's manifest nor a core one (pkg/addons)", f)
		}
	}
	if len(listed) < 5 {
		t.Errorf("only %d manifests listed: %v", len(listed), listed)
	}
}

// TestRenderOnlyTemplates: Render refuses names that are no template,
// including patterns (which text/template's ParseFS would expand) and the
// retired objects.
func TestRenderOnlyTemplates(t *testing.T) {
	for _, name := range []string{"", "coredns", "*.yaml", "retired.yaml", "../go.mod", "rbac.yaml/"} {
		if _, err := Render(name, Values{}); err == nil {
			t.Errorf("Render(%q) succeeded", name)
		}
	}
}
