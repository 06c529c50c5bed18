package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kasa-io/kasa/pkg/datadir"
	"github.com/kasa-io/kasa/pkg/fileutil"
	"github.com/kasa-io/kasa/pkg/pki"
	"github.com/kasa-io/kasa/pkg/token"
)

// RotateCAs is the first step of kasa certificate rotate-ca: it replaces
// the server's four CAs with new ones (pki.RotateCA: the new CA signs,
// the old one stays trusted, a cross-certificate follows what the new one
// signs) and writes the token files with the new CA's hash (their secrets
// stay). The running server issues its certificates under the new CAs
// within a minute (certRenewal), and agents take the new CAs and
// certificates at their next check, within 5 minutes; tokens made before
// keep joining until FinishCARotation.
func RotateCAs(d datadir.Server, now time.Time) error {
	if err := checkRotatable(d); err != nil {
		return err
	}
	if f, err := caFileNot(d, false); err != nil {
		return err
	} else if f != "" {
		return fmt.Errorf("a rotation of the CAs is under way (%s holds two CAs): finish it with kasa certificate rotate-ca --finish first", f)
	}
	for _, name := range caNames {
		if _, err := pki.RotateCA(d.TLS(name+".crt"), d.TLS(name+".key"), now); err != nil {
			return fmt.Errorf("rotate %s: %w", d.TLS(name+".crt"), err)
		}
	}
	caPEM, err := os.ReadFile(d.TLS("ca.crt"))
	if err != nil {
		return err
	}
	for _, file := range []string{d.Token(), d.AgentToken()} {
		if err := rehashToken(file, caPEM); err != nil {
			return err
		}
	}
	return nil
}

// checkRotatable refuses a data dir whose CAs rotate-ca cannot replace.
func checkRotatable(d datadir.Server) error {
	if _, err := os.Stat(d.TLS("ca.key")); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s has no CA keys: kasa certificate rotate-ca runs on a server (give its --data-dir)", d.Root)
	} else if err != nil {
		return err
	}
	if _, err := os.Stat(d.SQLite()); errors.Is(err, os.ErrNotExist) {
		return errors.New("this server keeps its cluster in an external datastore (--datastore-endpoint), where every server shares the CAs through the bootstrap data: rotate-ca replaces the CAs of a server with its own SQLite datastore only; nothing was changed")
	} else if err != nil {
		return err
	}
	return nil
}

// caFileNot returns the first of the server's CA files that is not as
// rotating says (holding two CAs, or one), or "".
func caFileNot(d datadir.Server, rotating bool) (string, error) {
	for _, name := range caNames {
		r, err := pki.Rotating(d.TLS(name + ".crt"))
		if err != nil {
			return "", err
		}
		if r != rotating {
			return d.TLS(name + ".crt"), nil
		}
	}
	return "", nil
}

// rehashToken writes the token file with the CA hash of caPEM; a file
// that does not exist is left so.
func rehashToken(file string, caPEM []byte) error {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	t, err := token.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	t.CAHash = token.CAHash(caPEM)
	return fileutil.WriteFile(file, []byte(t.String()+"\n"), 0o600)
}

// FinishCARotation is the second step of kasa certificate rotate-ca: the
// old CAs are dropped from the CA files, so that nothing kasa runs trusts
// them, and a certificate signed with an old key is refused. Unless force
// is set, it first checks that every node took the new CAs (its kubelet
// serves a certificate of the new kubelet CA, which an agent gets in the
// same renewal as its new client certificates and CA files) and that the
// controller-manager published the new server CA: a node still on the old
// client CA would be refused by the API server, and could not renew.
func FinishCARotation(ctx context.Context, d datadir.Server, c kubernetes.Interface, force bool) error {
	if err := checkRotatable(d); err != nil {
		return err
	}
	if f, err := caFileNot(d, true); err != nil {
		return err
	} else if f != "" {
		return fmt.Errorf("no rotation of the CAs is under way (%s holds one CA): kasa certificate rotate-ca starts one", f)
	}
	if !force {
		if err := checkRotated(ctx, d, c); err != nil {
			return err
		}
	}
	for _, name := range caNames {
		if err := pki.FinishRotation(d.TLS(name + ".crt")); err != nil {
			return fmt.Errorf("finish %s: %w", d.TLS(name+".crt"), err)
		}
	}
	return nil
}

// checkRotated checks that the cluster took the new CAs.
func checkRotated(ctx context.Context, d datadir.Server, c kubernetes.Interface) error {
	kubeletCA, err := pki.ReadCert(d.TLS("kubelet-ca.crt"))
	if err != nil {
		return err
	}
	serverCA, err := pki.ReadCert(d.TLS("ca.crt"))
	if err != nil {
		return err
	}
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list the nodes: %w", err)
	}
	var behind []string
	for _, n := range nodes.Items {
		if err := servesUnder(ctx, &n, kubeletCA); err != nil {
			behind = append(behind, fmt.Sprintf("%s (%v)", n.Name, err))
		}
	}
	if len(behind) > 0 {
		return fmt.Errorf("not every node took the new CAs yet: %s. An agent takes them within 5 minutes of rotate-ca (kasa certificate rotate on it, now); run --finish again then, or add --force for a node that is gone for good (one that comes back must join again, with the new token). Nothing was changed", strings.Join(behind, "; "))
	}
	cm, err := c.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read kube-root-ca.crt: %w", err)
	}
	if !hasCert([]byte(cm.Data["ca.crt"]), serverCA) {
		return errors.New("the controller-manager has not published the new server CA to the pods yet (kube-root-ca.crt); it does within a minute of rotate-ca: run --finish again then. Nothing was changed")
	}
	return nil
}

// servesUnder checks that the kubelet of node serves a certificate that
// ca signed.
func servesUnder(ctx context.Context, node *corev1.Node, ca *x509.Certificate) error {
	var addr string
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			addr = a.Address
			break
		}
	}
	if addr == "" {
		return errors.New("no InternalIP")
	}
	port := int(node.Status.DaemonEndpoints.KubeletEndpoint.Port)
	if port == 0 {
		port = 10250
	}
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second},
		// Only the certificate is read, to see which CA signed it.
		Config: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}} //nolint:gosec // nothing is sent
	conn, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("its kubelet does not answer: %w", err)
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 || certs[0].CheckSignatureFrom(ca) != nil {
		return errors.New("its kubelet serves a certificate of the old kubelet CA")
	}
	return nil
}

// hasCert reports whether the PEM bundle holds cert.
func hasCert(bundle []byte, cert *x509.Certificate) bool {
	certs, err := pki.ParseCerts(bundle)
	return err == nil && slices.ContainsFunc(certs, cert.Equal)
}
