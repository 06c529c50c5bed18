//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kasa-io/kasa/pkg/join/joinclient"
	"github.com/kasa-io/kasa/pkg/pki"
	"github.com/kasa-io/kasa/pkg/token"
	"github.com/kasa-io/kasa/tests/harness"
)

// TestIntegrationCARotation: kasa certificate rotate-ca replaces the four
// CAs of a running server in two steps. During the rotation, clients that
// hold only the old CAs keep working (the new certificates carry the
// cross-certificate, the CA files trust both), a client that trusts only
// the new server CA verifies the server, the join endpoint shows both CAs
// so that a token made before still pins, and the controller-manager
// publishes the new CA to the pods. rotate-ca --finish drops the old CAs: a
// client certificate signed with the old client CA's key (an attacker who
// has it) is refused, and the admin kubeconfig still works. Out of order,
// each step is refused and changes nothing.
func TestIntegrationCARotation(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	tlsFile := func(name string) string { return filepath.Join(s.DataDir, "server/tls", name) }
	read := func(file string) []byte {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	oldServerCA := read(tlsFile("ca.crt"))
	oldToken, err := token.Parse(strings.TrimSpace(string(read(filepath.Join(s.DataDir, "server/token")))))
	if err != nil {
		t.Fatal(err)
	}
	oldAdmin, err := s.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	// The old client CA, as an attacker who took its key keeps it.
	keep := t.TempDir()
	for _, f := range []string{"client-ca.crt", "client-ca.key"} {
		if err := os.WriteFile(filepath.Join(keep, f), read(tlsFile(f)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	oldClientCA, err := pki.LoadCA(filepath.Join(keep, "client-ca.crt"), filepath.Join(keep, "client-ca.key"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	forged := forgeAdmin(t, oldClientCA, s.URL())

	out, code, _ := s.Run("certificate", "rotate-ca", "--finish", "--data-dir", s.DataDir)
	if code == 0 || !strings.Contains(out, "no rotation of the CAs is under way") {
		t.Fatalf("--finish before rotate-ca: exit %d\n%s", code, out)
	}
	out, code, err = s.Run("certificate", "rotate-ca", "--data-dir", s.DataDir)
	if err != nil || code != 0 || !strings.Contains(out, "the server issued its certificates under the new CAs") {
		t.Fatalf("rotate-ca: exit %d, %v\n%s", code, err, out)
	}
	t.Logf("rotate-ca:\n%s", out)
	out, code, _ = s.Run("certificate", "rotate-ca", "--data-dir", s.DataDir)
	if code == 0 || !strings.Contains(out, "under way") {
		t.Errorf("a second rotate-ca: exit %d\n%s", code, out)
	}
	rotating := read(tlsFile("ca.crt"))
	certs, err := pki.ParseCerts(rotating)
	if err != nil || len(certs) != 2 {
		t.Fatalf("ca.crt during the rotation: %d certificates, %v", len(certs), err)
	}
	newServerCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certs[0].Raw})
	newToken, err := token.Parse(strings.TrimSpace(string(read(filepath.Join(s.DataDir, "server/token")))))
	if err != nil || newToken.Secret != oldToken.Secret || newToken.CAHash != token.CAHash(newServerCA) {
		t.Errorf("the token file after rotate-ca: %v", err)
	}

	works := func(what string, rc *rest.Config) error {
		c, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return err
		}
		if _, err := c.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	newOnly := rest.CopyConfig(oldAdmin)
	newOnly.CAData = newServerCA
	for what, rc := range map[string]*rest.Config{
		"the admin kubeconfig made before (old CAs only)": oldAdmin,
		"a client that trusts the new server CA only":     newOnly,
		"a client certificate of the old client CA":       forged,
	} {
		if err := works(what, rc); err != nil {
			t.Errorf("during the rotation: %v", err)
		}
	}
	// The join endpoint shows both CAs; the token made before pins them,
	// as the new one does.
	if err := harness.Eventually(90*time.Second, func() error {
		for _, tok := range []token.Token{oldToken, newToken} {
			got, pinned, err := joinclient.FetchCA(ctx, s.URL(), tok)
			if err != nil {
				return err
			}
			if !pinned || !bytes.Equal(got, rotating) {
				return errors.New("/cacerts does not show the new and the old server CA")
			}
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	c := client(t, s)
	rootCA := func(want []byte) error {
		cm, err := c.CoreV1().ConfigMaps("kube-system").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cm.Data["ca.crt"] != string(want) {
			return fmt.Errorf("kube-root-ca.crt holds %d bytes, not the %d of ca.crt", len(cm.Data["ca.crt"]), len(want))
		}
		return nil
	}
	if err := harness.Eventually(90*time.Second, func() error { return rootCA(rotating) }); err != nil {
		t.Errorf("the controller-manager did not publish the CAs of the rotation: %v", err)
	}

	if err := harness.Eventually(2*time.Minute, func() error {
		out, code, err := s.Run("certificate", "rotate-ca", "--finish", "--data-dir", s.DataDir)
		if err != nil || code != 0 {
			return fmt.Errorf("rotate-ca --finish: exit %d, %w\n%s", code, err, out)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	finished := read(tlsFile("ca.crt"))
	if !bytes.Equal(finished, newServerCA) {
		t.Fatal("ca.crt after --finish is not the new CA alone")
	}
	// The API server reads its client CA file again within a minute or so.
	if err := harness.Eventually(3*time.Minute, func() error {
		if err := works("forged", forged); err == nil {
			return errors.New("a client certificate of the old client CA is still accepted")
		} else if !strings.Contains(err.Error(), "Unauthorized") {
			return err
		}
		return nil
	}); err != nil {
		t.Errorf("after --finish: %v", err)
	}
	if err := harness.Eventually(2*time.Minute, func() error {
		rc, err := s.RESTConfig()
		if err != nil {
			return err
		}
		if !bytes.Equal(rc.CAData, newServerCA) {
			return errors.New("the admin kubeconfig does not hold the new CA alone")
		}
		return works("the admin kubeconfig", rc)
	}); err != nil {
		t.Error(err)
	}
	if rc, err := s.RESTConfig(); err == nil {
		newOnly = rest.CopyConfig(rc)
		newOnly.CAData = newServerCA
	}
	if err := works("a client that trusts the new server CA only", newOnly); err != nil {
		t.Error(err)
	}
	// The cross-certificate stays after the server's certificate: a client
	// that kept the old server CA (a kubeconfig copied elsewhere) still
	// verifies the server, and proves nothing with it.
	trustOld := rest.AnonymousClientConfig(oldAdmin)
	trustOld.CAData = oldServerCA
	if err := works("anonymous", trustOld); err != nil && !strings.Contains(err.Error(), "Forbidden") && !strings.Contains(err.Error(), "Unauthorized") {
		t.Errorf("a client that trusts the old server CA: %v", err)
	}
	if err := harness.Eventually(90*time.Second, func() error { return rootCA(finished) }); err != nil {
		t.Errorf("the controller-manager did not publish the new CA alone: %v", err)
	}
	if !s.Running() {
		t.Fatal("the server exited")
	}
	if log := s.LogTail(100000); !strings.Contains(log, "starting again to read the files that changed") {
		t.Error("the log does not show the controller-manager starting again")
	}
}

// forgeAdmin is a client of url with an admin certificate signed by ca.
func forgeAdmin(t *testing.T, ca *pki.CA, url string) *rest.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Sign(key.Public(), pki.Leaf{CommonName: "system:admin", Organization: []string{"system:masters"}, Client: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &rest.Config{Host: url, TLSClientConfig: rest.TLSClientConfig{Insecure: true, CertData: certPEM,
		KeyData: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})}}
}

// TestIntegrationSharedCARotation: with two servers on one datastore,
// rotate-ca on the first puts the new CAs into the bootstrap data. The
// second, down at the time, takes them at its start (a CA that shares a
// certificate with its own replaces it; another cluster's would not), and
// serves under them; --finish checks both API servers, and the second
// takes the end of the rotation while it runs: then an admin certificate
// forged with the old client CA's key is refused by both.
func TestIntegrationSharedCARotation(t *testing.T) {
	first, second, _ := twoServers(t, "--datastore-endpoint", startMariaDB(t))
	ctx := context.Background()
	tlsFile := func(s *harness.Server, name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(s.DataDir, "server/tls", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	keep := t.TempDir()
	for _, f := range []string{"client-ca.crt", "client-ca.key"} {
		if err := os.WriteFile(filepath.Join(keep, f), tlsFile(first, f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	oldClientCA, err := pki.LoadCA(filepath.Join(keep, "client-ca.crt"), filepath.Join(keep, "client-ca.key"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	forged := forgeAdmin(t, oldClientCA, first.URL())
	forgedOn := func(s *harness.Server) *rest.Config {
		rc := rest.CopyConfig(forged)
		rc.Host = s.URL()
		return rc
	}
	works := func(rc *rest.Config) error {
		c, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return err
		}
		_, err = c.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return err
	}

	if _, err := second.Stop(time.Minute); err != nil {
		t.Fatal(err)
	}
	out, code, err := first.Run("certificate", "rotate-ca", "--data-dir", first.DataDir)
	if err != nil || code != 0 {
		t.Fatalf("rotate-ca: exit %d, %v\n%s", code, err, out)
	}
	if err := harness.Eventually(time.Minute, func() error {
		if !strings.Contains(first.LogTail(100000), "the other servers take them from the datastore") {
			return errors.New("the first server did not put its new CAs into the datastore")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := startReady(t, second); err != nil {
		t.Fatalf("the second server after the rotation: %v", err)
	}
	for _, name := range []string{"ca.crt", "ca.key", "client-ca.crt", "client-ca.key", "ca-cross.crt", "../token"} {
		if !bytes.Equal(tlsFile(first, name), tlsFile(second, name)) {
			t.Errorf("%s differs between the servers after the rotation", name)
		}
	}
	newCA, err := pki.ReadCert(filepath.Join(first.DataDir, "server/tls/ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*harness.Server{first, second} {
		if err := harness.Eventually(time.Minute, func() error {
			conn, err := tls.Dial("tcp", strings.TrimPrefix(s.URL(), "https://"), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reads the served certificate
			if err != nil {
				return err
			}
			defer conn.Close()
			if conn.ConnectionState().PeerCertificates[0].CheckSignatureFrom(newCA) != nil {
				return errors.New("serves a certificate of the old CA")
			}
			return nil
		}); err != nil {
			t.Errorf("%s: %v", s.DataDir, err)
		}
		if err := works(forgedOn(s)); err != nil {
			t.Errorf("%s: a certificate of the old client CA during the rotation: %v", s.DataDir, err)
		}
	}

	if err := harness.Eventually(2*time.Minute, func() error {
		out, code, err := first.Run("certificate", "rotate-ca", "--finish", "--data-dir", first.DataDir)
		if err != nil || code != 0 {
			return fmt.Errorf("rotate-ca --finish: exit %d, %w\n%s", code, err, out)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := harness.Eventually(time.Minute, func() error {
		if !bytes.Equal(tlsFile(first, "ca.crt"), tlsFile(second, "ca.crt")) {
			return errors.New("the second server did not take the end of the rotation")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*harness.Server{first, second} {
		if err := harness.Eventually(3*time.Minute, func() error {
			if err := works(forgedOn(s)); err == nil {
				return errors.New("a certificate of the old client CA is still accepted")
			} else if !strings.Contains(err.Error(), "Unauthorized") {
				return err
			}
			return nil
		}); err != nil {
			t.Errorf("%s after --finish: %v", s.DataDir, err)
		}
		if _, err := client(t, s).CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
			t.Errorf("%s: its admin kubeconfig after --finish: %v", s.DataDir, err)
		}
	}
}

// upstreamStartFatal is the API server's exit when its service IP repair
// finds its informers unsynced 60 s after the start (kubernetes#141220,
// open): the storage answered late, and a server under systemd is
// started again.
const upstreamStartFatal = `PostStartHook "start-service-ip-repair-controllers" failed`

// startReady starts a stopped server and waits until it is ready. It
// starts it once more, as systemd's Restart=always would, only when the
// API server gave up in the upstream start-up race above; the test says
// so in its log.
func startReady(t *testing.T, s *harness.Server) error {
	t.Helper()
	for try := 1; ; try++ {
		if err := s.Start(); err != nil {
			return err
		}
		err := s.WaitReady(readyTimeout)
		if err == nil || try == 2 || s.Running() || !strings.Contains(s.LogTail(200), upstreamStartFatal) {
			return err
		}
		t.Logf("%s: the API server exited in the upstream start-up race, started again: %v", s.DataDir, err)
	}
}
