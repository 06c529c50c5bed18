package manifests

import (
	"bytes"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

func TestRenderCoreDNS(t *testing.T) {
	b, err := Render("coredns", Values{ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local", CoreDNSImage: "kasa.local/coredns:1.15.0"})
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
