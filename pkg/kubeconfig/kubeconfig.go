// Package kubeconfig writes the kubeconfig files of kasa's components and
// picks the kubeconfig that kubectl and kasa's commands read by default.
package kubeconfig

import (
	"fmt"
	"os"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kasa-io/kasa/pkg/fileutil"
)

// Spec describes a kubeconfig for one client certificate.
type Spec struct {
	Server   string
	CAFile   string
	CertFile string
	KeyFile  string
	// Embed puts the certificates' bytes in the file instead of their paths,
	// so the file works when copied elsewhere.
	Embed bool
}

// Write writes a kubeconfig with one cluster, user and context
// named "default", as k3s does.
func Write(file string, mode os.FileMode, s Spec) error {
	cluster := &clientcmdapi.Cluster{Server: s.Server}
	user := &clientcmdapi.AuthInfo{}
	if s.Embed {
		var err error
		if cluster.CertificateAuthorityData, err = os.ReadFile(s.CAFile); err != nil {
			return err
		}
		if user.ClientCertificateData, err = os.ReadFile(s.CertFile); err != nil {
			return err
		}
		if user.ClientKeyData, err = os.ReadFile(s.KeyFile); err != nil {
			return err
		}
	} else {
		cluster.CertificateAuthority = s.CAFile
		user.ClientCertificate = s.CertFile
		user.ClientKey = s.KeyFile
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["default"] = cluster
	cfg.AuthInfos["default"] = user
	cfg.Contexts["default"] = &clientcmdapi.Context{Cluster: "default", AuthInfo: "default"}
	cfg.CurrentContext = "default"
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", file, err)
	}
	if err := fileutil.WriteFile(file, data, mode); err != nil {
		return fmt.Errorf("kubeconfig %s: %w", file, err)
	}
	return nil
}
