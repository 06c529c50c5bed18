package hosts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// AdminKubeconfig is where kasa server writes its admin kubeconfig.
const AdminKubeconfig = "/etc/kasa/kasa.yaml"

// Client is a client, from this machine, of the kasa server that runs in
// the host: its admin kubeconfig (waited for up to wait) aimed at the
// host's address instead of 127.0.0.1, each request limited to 10 s. Each
// new connection reads the kubeconfig's certificate again, so that the
// client follows the server's renewals of the admin certificate.
func (h *Host) Client(ctx context.Context, wait time.Duration) (kubernetes.Interface, error) {
	deadline := time.Now().Add(wait)
	var kc *clientcmdapi.Config
	for {
		var err error
		kc, err = h.adminKubeconfig(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("host %s: no admin kubeconfig within %s: %w", h.Name, wait, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	rc, err := clientcmd.NewDefaultClientConfig(*kc, nil).ClientConfig()
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(rc.CAData) {
		return nil, fmt.Errorf("host %s: %s holds no CA", h.Name, AdminKubeconfig)
	}
	getCert := func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		kc, err := h.adminKubeconfig(context.Background())
		if err != nil {
			return nil, err
		}
		rc, err := clientcmd.NewDefaultClientConfig(*kc, nil).ClientConfig()
		if err != nil {
			return nil, err
		}
		c, err := tls.X509KeyPair(rc.CertData, rc.KeyData)
		return &c, err
	}
	return kubernetes.NewForConfig(&rest.Config{
		Host:    rc.Host,
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, GetClientCertificate: getCert, MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2:   true,
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConnsPerHost: 25,
		},
	})
}

// adminKubeconfig reads the host's admin kubeconfig, aimed at the host's
// address.
func (h *Host) adminKubeconfig(ctx context.Context) (*clientcmdapi.Config, error) {
	out, stderr, err := h.Exec(ctx, "cat", AdminKubeconfig)
	if err != nil {
		return nil, fmt.Errorf("%w %s", err, stderr)
	}
	cfg, err := clientcmd.Load([]byte(out))
	if err != nil {
		return nil, fmt.Errorf("host %s: %s: %w", h.Name, AdminKubeconfig, err)
	}
	if len(cfg.Clusters) == 0 {
		return nil, errors.New(AdminKubeconfig + " names no cluster")
	}
	for _, c := range cfg.Clusters {
		c.Server = "https://" + h.IP + ":6443"
	}
	return cfg, nil
}
