package netguard

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

const prev = `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"10.42.1.7/24","gateway":"10.42.1.1"},{"address":"fd00::7/64"}]}`

// TestCNIPluginPassesOn: a pod of a namespace without a policy is not
// held (nothing touches nftables, which this test could not do), and the
// previous result goes on unchanged.
func TestCNIPluginPassesOn(t *testing.T) {
	file := filepath.Join(t.TempDir(), "namespaces")
	if err := os.WriteFile(file, []byte("shop\nbank\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := `{"cniVersion":"1.0.0","name":"kasa","type":"kasa-hold","policyNamespaces":"` + file + `","prevResult":` + prev + `}`
	var out bytes.Buffer
	err := CNIPlugin(strings.NewReader(conf), &out, env(map[string]string{
		"CNI_COMMAND": "ADD", "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
	}))
	if err != nil || out.String() != prev {
		t.Fatalf("ADD: %v, wrote %q", err, out.String())
	}
	if !policyNamespace(file, "bank") || policyNamespace(file, "default") || policyNamespace(file, "ban") {
		t.Error("policyNamespace reads the file wrong")
	}
	if policyNamespace(filepath.Join(t.TempDir(), "none"), "bank") {
		t.Error("no file: no namespace has a policy")
	}
}

func TestCNIPluginRefuses(t *testing.T) {
	var out bytes.Buffer
	err := CNIPlugin(strings.NewReader(`{"cniVersion":"1.0.0","type":"kasa-hold"}`), &out, env(map[string]string{"CNI_COMMAND": "ADD"}))
	if err == nil || !strings.Contains(out.String(), `"code":999`) || !strings.Contains(out.String(), "must follow") {
		t.Errorf("ADD without a previous result: %v, wrote %s", err, out.String())
	}
	out.Reset()
	if err := CNIPlugin(strings.NewReader(`{not json`), &out, env(map[string]string{"CNI_COMMAND": "ADD"})); err == nil || !strings.Contains(out.String(), "network configuration") {
		t.Errorf("bad configuration: %v, wrote %s", err, out.String())
	}
	out.Reset()
	if err := CNIPlugin(strings.NewReader(""), &out, env(map[string]string{"CNI_COMMAND": "VERSION"})); err != nil || !strings.Contains(out.String(), `"1.0.0"`) {
		t.Errorf("VERSION: %v, wrote %s", err, out.String())
	}
}

func TestResultAddrs(t *testing.T) {
	got := resultAddrs([]byte(prev))
	if !slices.Equal(got, []netip.Addr{netip.MustParseAddr("10.42.1.7")}) {
		t.Errorf("addresses: %v", got)
	}
	if got := resultAddrs([]byte(`{"ips":"no"}`)); got != nil {
		t.Errorf("a bad result: %v", got)
	}
	if v := cniArg("IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=till", "K8S_POD_NAMESPACE"); v != "shop" {
		t.Errorf("cniArg: %q", v)
	}
}
