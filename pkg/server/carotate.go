package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
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
// within 10 s (certRenewal), and agents take the new CAs and
// certificates at their next check, within 5 minutes; tokens made before
// keep joining until FinishCARotation.
//
// With several servers on one datastore, the running server puts the new
// CA files into the cluster's bootstrap data, where every other server
// takes them within 10 s (syncCAs).
func RotateCAs(d datadir.Server, now time.Time) error {
	if err := checkRotatable(d); err != nil {
		return err
	}
	if f, err := caFileNot(d, true); err != nil {
		return err
	} else if f == "" {
		return fmt.Errorf("a rotation of the CAs is under way (%s holds two CAs): finish it with kasa certificate rotate-ca --finish first", d.TLS("ca.crt"))
	}
	// A run that stopped half-way rotated some: the next one goes on with
	// the others.
	for _, name := range caNames {
		rotating, err := pki.Rotating(d.TLS(name + ".crt"))
		if err != nil {
			return err
		}
		if rotating {
			continue
		}
		if _, err := pki.RotateCA(d.TLS(name+".crt"), d.TLS(name+".key"), now); err != nil {
			return fmt.Errorf("rotate %s: %w (run rotate-ca again to go on)", d.TLS(name+".crt"), err)
		}
	}
	if err := rehashTokens(d); err != nil {
		return err
	}
	return nil
}

// caFileNames are the CA files of a server folder, by path relative to
// it: each CA's certificate and key, and its cross-certificate when it has
// one.
func caFileNames(root string) []string {
	var out []string
	for _, name := range caNames {
		out = append(out, "tls/"+name+".crt", "tls/"+name+".key")
		if _, err := os.Stat(filepath.Join(root, "tls", name+"-cross.crt")); err == nil {
			out = append(out, "tls/"+name+"-cross.crt")
		}
	}
	return out
}

// replaceRotated is the rule by which a server takes the cluster's CA
// files over its own (bootstrap.Data.Install): a CA file that shares a
// certificate with the one there (a rotation, started or finished), and
// that CA's key and cross-certificate with it.
func replaceRotated(root string, files map[string][]byte) func(name string, have []byte) bool {
	return func(name string, have []byte) bool {
		if !isCAFile(name) {
			return false
		}
		ca := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, ".key"), ".crt"), "-cross") + ".crt"
		local, err := os.ReadFile(filepath.Join(root, ca))
		return err == nil && related(local, files[ca])
	}
}

// related reports whether two PEM bundles share a certificate.
func related(a, b []byte) bool {
	ca, errA := pki.ParseCerts(a)
	cb, errB := pki.ParseCerts(b)
	if errA != nil || errB != nil {
		return false
	}
	for _, c := range ca {
		if slices.ContainsFunc(cb, c.Equal) {
			return true
		}
	}
	return false
}

// checkRotatable refuses a data dir whose CAs rotate-ca cannot replace.
func checkRotatable(d datadir.Server) error {
	if _, err := os.Stat(d.TLS("ca.key")); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s has no CA keys: kasa certificate rotate-ca runs on a server (give its --data-dir)", d.Root)
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

// rehashTokens writes the token files of d with the CA hash of its ca.crt.
func rehashTokens(d datadir.Server) error {
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

// isCAFile reports whether name (relative to a server folder) is a CA's
// certificate, key or cross-certificate.
func isCAFile(name string) bool {
	for _, ca := range caNames {
		if name == "tls/"+ca+".crt" || name == "tls/"+ca+".key" || name == "tls/"+ca+"-cross.crt" {
			return true
		}
	}
	return false
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
	if t.CAHash == "" || t.CAHash == token.CAHash(caPEM) {
		return nil
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
		addr, err := kubeletAddr(&n)
		if err == nil {
			err = servedUnder(ctx, addr, kubeletCA)
		}
		if err != nil {
			behind = append(behind, fmt.Sprintf("node %s (%v)", n.Name, err))
		}
	}
	// Every API server (servers that share a datastore take the new CAs
	// from its bootstrap data).
	eps, err := c.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=kubernetes"})
	if err != nil {
		return fmt.Errorf("list the API servers: %w", err)
	}
	for _, es := range eps.Items {
		for _, p := range es.Ports {
			for _, e := range es.Endpoints {
				for _, a := range e.Addresses {
					if p.Port == nil {
						continue
					}
					addr := net.JoinHostPort(a, strconv.Itoa(int(*p.Port)))
					if err := servedUnder(ctx, addr, serverCA); err != nil {
						behind = append(behind, fmt.Sprintf("API server %v", err))
					}
				}
			}
		}
	}
	if len(behind) > 0 {
		return fmt.Errorf("not every node and server took the new CAs yet: %s. An agent takes them within 5 minutes of rotate-ca (kasa certificate rotate on it, now), a server within 10 s; run --finish again then, or add --force for a node that is gone for good (one that comes back must join again, with the new token). Nothing was changed", strings.Join(behind, "; "))
	}
	cm, err := c.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read kube-root-ca.crt: %w", err)
	}
	if !hasCert([]byte(cm.Data["ca.crt"]), serverCA) {
		return errors.New("the controller-manager has not published the new server CA to the pods yet (kube-root-ca.crt); it does within seconds of rotate-ca: run --finish again then. Nothing was changed")
	}
	return nil
}

// kubeletAddr is where the kubelet of node serves.
func kubeletAddr(node *corev1.Node) (string, error) {
	port := int(node.Status.DaemonEndpoints.KubeletEndpoint.Port)
	if port == 0 {
		port = 10250
	}
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return net.JoinHostPort(a.Address, strconv.Itoa(port)), nil
		}
	}
	return "", errors.New("no InternalIP")
}

// servedUnder checks that what serves at addr (host:port) shows a
// certificate that ca signed.
func servedUnder(ctx context.Context, addr string, ca *x509.Certificate) error {
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second},
		// Only the certificate is read, to see which CA signed it.
		Config: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}} //nolint:gosec // nothing is sent
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("%s does not answer: %w", addr, err)
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 || certs[0].CheckSignatureFrom(ca) != nil {
		return fmt.Errorf("%s serves a certificate of the old CA", addr)
	}
	return nil
}

// hasCert reports whether the PEM bundle holds cert.
func hasCert(bundle []byte, cert *x509.Certificate) bool {
	certs, err := pki.ParseCerts(bundle)
	return err == nil && slices.ContainsFunc(certs, cert.Equal)
}
