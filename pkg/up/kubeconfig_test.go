package up

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func serverKubeconfig(t *testing.T) []byte {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["default"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:6443", CertificateAuthorityData: []byte("CA")}
	cfg.AuthInfos["default"] = &clientcmdapi.AuthInfo{ClientCertificateData: []byte("CRT"), ClientKeyData: []byte("KEY")}
	cfg.Contexts["default"] = &clientcmdapi.Context{Cluster: "default", AuthInfo: "default"}
	cfg.CurrentContext = "default"
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMergeKubeconfig(t *testing.T) {
	dst := filepath.Join(t.TempDir(), ".kube", "config")
	// The user's own cluster is there first.
	mine := clientcmdapi.NewConfig()
	mine.Clusters["work"] = &clientcmdapi.Cluster{Server: "https://work:6443"}
	mine.AuthInfos["work"] = &clientcmdapi.AuthInfo{Token: "t"}
	mine.Contexts["work"] = &clientcmdapi.Context{Cluster: "work", AuthInfo: "work"}
	mine.CurrentContext = "work"
	if err := write(dst, mine); err != nil {
		t.Fatal(err)
	}
	if err := MergeKubeconfig(dst, serverKubeconfig(t), "https://10.0.0.1:6443", "shop", true); err != nil {
		t.Fatal(err)
	}
	got, err := clientcmd.LoadFromFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if got.CurrentContext != "shop" || got.Clusters["shop"].Server != "https://10.0.0.1:6443" ||
		string(got.Clusters["shop"].CertificateAuthorityData) != "CA" || string(got.AuthInfos["shop"].ClientKeyData) != "KEY" ||
		got.Contexts["work"] == nil || got.Clusters["work"].Server != "https://work:6443" {
		t.Errorf("merged: %+v", got)
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	// Again, not made current: replaced in place, the current one kept.
	if err := RemoveContext(dst, "shop"); err != nil {
		t.Fatal(err)
	}
	got, _ = clientcmd.LoadFromFile(dst)
	if got.Contexts["shop"] != nil || got.Clusters["shop"] != nil || got.AuthInfos["shop"] != nil || got.CurrentContext != "" || got.Contexts["work"] == nil {
		t.Errorf("after RemoveContext: %+v", got)
	}
	got.CurrentContext = "work"
	if err := write(dst, got); err != nil {
		t.Fatal(err)
	}
	if err := MergeKubeconfig(dst, serverKubeconfig(t), "https://10.0.0.2:6443", "shop", false); err != nil {
		t.Fatal(err)
	}
	got, _ = clientcmd.LoadFromFile(dst)
	if got.CurrentContext != "work" || got.Clusters["shop"].Server != "https://10.0.0.2:6443" {
		t.Errorf("not made current: %+v", got)
	}
	if err := MergeKubeconfig(dst, []byte("not yaml: ["), "https://x:6443", "shop", true); err == nil {
		t.Error("a broken kubeconfig was merged")
	}
}
