package server

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/kasa-io/kasa/pkg/agent"
	"github.com/kasa-io/kasa/pkg/bootstrap"
	"github.com/kasa-io/kasa/pkg/component"
	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/datadir"
	"github.com/kasa-io/kasa/pkg/datastore"
	"github.com/kasa-io/kasa/pkg/fileutil"
	"github.com/kasa-io/kasa/pkg/pki"
	"github.com/kasa-io/kasa/pkg/token"
)

// Client identities of the control plane. Each gets a client certificate
// signed by the client CA; the names are the ones Kubernetes' default RBAC
// rules know.
const (
	adminUser      = "system:admin"
	mastersGroup   = "system:masters"
	controllerUser = "system:kube-controller-manager"
	schedulerUser  = "system:kube-scheduler"
	apiserverUser  = "system:kube-apiserver"
	authProxyUser  = "system:auth-proxy"
)

// certs is what ensureCerts made or found: the cluster's certificate
// authorities. Each signs one kind of certificate, so that a certificate
// of one kind never passes for another (a node's serving certificate for
// the API server's, say), as upstream Kubernetes recommends.
type certs struct {
	// Server signs only the API server's serving certificate. It is the CA
	// that tokens pin (K10<hash>::...), that /cacerts serves and that every
	// kubeconfig and pod trusts; its files keep the name ca.crt.
	Server *pki.CA
	// Client signs every client certificate: the control plane's, the
	// admin's and the nodes'.
	Client *pki.CA
	// Kubelet signs the nodes' kubelet serving certificates.
	Kubelet *pki.CA
	// KubeletBundle is what the API server and metrics-server verify
	// kubelets with (PEM): Kubelet's certificate, and in a cluster made
	// with one CA also that CA, until its nodes have new certificates.
	KubeletBundle []byte
}

// serverNames returns the DNS names and IPs of the API server's certificate.
func serverNames(cfg *config.Server) ([]string, []net.IP) {
	dns := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc." + cfg.ClusterDomain, cfg.NodeName}
	ips := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback(), cfg.ServiceCIDR.Addr().Next(), cfg.AdvertiseAddress}
	ips = append(ips, cfg.NodeIPs...)
	if !cfg.BindAddress.IsUnspecified() {
		ips = append(ips, cfg.BindAddress)
	}
	for _, san := range cfg.TLSSANs {
		if a, err := netip.ParseAddr(san); err == nil {
			ips = append(ips, a)
		} else {
			dns = append(dns, san)
		}
	}
	slices.Sort(dns)
	dns = slices.Compact(dns)
	var out []net.IP
	seen := map[netip.Addr]bool{}
	for _, a := range ips {
		if a.IsValid() && !seen[a] {
			seen[a] = true
			out = append(out, net.IP(a.AsSlice()))
		}
	}
	return dns, out
}

// ensureCerts creates the CAs and every control-plane certificate on first
// start, and later renews those that are due (pki.RenewDue: 90 days before
// expiry), whose names or lifetime changed or that another CA signed; it
// runs at start and at each check of certRenewal. CAs are never replaced.
//
// A cluster made by a kasa with one CA (ca.crt signed everything) is
// upgraded in place: that CA stays the server CA, so that tokens, joined
// nodes and copied kubeconfigs keep working, and it also stays the client
// CA (client-ca.crt is its copy), so that every client certificate issued
// before stays valid; the nodes' serving certificates move to a new kubelet
// CA as each node renews them.
func ensureCerts(cfg *config.Server, p Paths, now time.Time, log *slog.Logger) (*certs, error) {
	upgraded, err := adoptSingleCA(p)
	if err != nil {
		return nil, err
	}
	if upgraded {
		log.Info("this cluster was made with one CA: it stays the server and client CA; nodes' serving certificates move to a kubelet CA of their own", "kubelet-ca", p.TLS("kubelet-ca.crt"))
	}
	serverCA, err := pki.LoadOrCreateCA(p.TLS("ca.crt"), p.TLS("ca.key"), "kasa-server-ca", pki.ECDSAP256, now)
	if err != nil {
		return nil, err
	}
	// RSA for the keys whose signatures the API server checks on most
	// requests: the CA of client certificates and the service-account key.
	clientCA, err := pki.LoadOrCreateCA(p.TLS("client-ca.crt"), p.TLS("client-ca.key"), "kasa-client-ca", pki.RSA2048, now)
	if err != nil {
		return nil, err
	}
	kubeletCA, err := pki.LoadOrCreateCA(p.TLS("kubelet-ca.crt"), p.TLS("kubelet-ca.key"), "kasa-kubelet-ca", pki.ECDSAP256, now)
	if err != nil {
		return nil, err
	}
	proxyCA, err := pki.LoadOrCreateCA(p.TLS("request-header-ca.crt"), p.TLS("request-header-ca.key"), "kasa-request-header-ca", pki.ECDSAP256, now)
	if err != nil {
		return nil, err
	}
	if err := pki.GenerateKeyFile(p.TLS("service-account.key"), pki.RSA2048); err != nil {
		return nil, err
	}
	bundle := slices.Clone(kubeletCA.CertPEM)
	if clientCA.Cert.Equal(serverCA.Cert) {
		bundle = append(bundle, serverCA.CertPEM...)
	}
	// The controller-manager's signers take a file of one certificate, the
	// one that signs: during a rotation the CA files hold two.
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"kubelet-ca-bundle.crt", bundle},
		{"client-ca-signer.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: clientCA.Cert.Raw})},
		{"kubelet-ca-signer.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: kubeletCA.Cert.Raw})},
	} {
		// Written only when it changed: ensureCerts runs at each check of
		// certRenewal, and the readers reload a file that is replaced.
		if old, _ := os.ReadFile(p.TLS(f.name)); !bytes.Equal(old, f.data) {
			if err := fileutil.WriteFile(p.TLS(f.name), f.data, 0o644); err != nil {
				return nil, err
			}
		}
	}
	dns, ips := serverNames(cfg)
	leaves := []struct {
		ca   *pki.CA
		leaf pki.Leaf
	}{
		{serverCA, pki.Leaf{CommonName: "kube-apiserver", Server: true, DNSNames: dns, IPs: ips,
			CertFile: p.TLS("serving-kube-apiserver.crt"), KeyFile: p.TLS("serving-kube-apiserver.key")}},
		{clientCA, clientLeaf(p, "admin", adminUser, mastersGroup)},
		{clientCA, clientLeaf(p, "kube-apiserver", apiserverUser, mastersGroup)},
		{clientCA, clientLeaf(p, "controller", controllerUser)},
		{clientCA, clientLeaf(p, "scheduler", schedulerUser)},
		{proxyCA, clientLeaf(p, "auth-proxy", authProxyUser)},
	}
	for _, ca := range []*pki.CA{serverCA, clientCA, kubeletCA, proxyCA} {
		ca.LeafLifetime = cfg.CertLifetime
	}
	for _, l := range leaves {
		wrote, err := l.ca.Ensure(l.leaf, now)
		if err != nil {
			return nil, fmt.Errorf("certificate %s: %w", l.leaf.CertFile, err)
		}
		if wrote {
			log.Info("wrote certificate", "file", l.leaf.CertFile, "cn", l.leaf.CommonName, "expires", expiry(l.leaf.CertFile))
		}
	}
	return &certs{Server: serverCA, Client: clientCA, Kubelet: kubeletCA, KubeletBundle: bundle}, nil
}

// adoptSingleCA makes the one CA of a cluster made before the CAs were
// split (ca.crt there, client-ca.crt not) its client CA too, by copying its
// files; it reports whether it did.
func adoptSingleCA(p Paths) (bool, error) {
	if _, err := os.Stat(p.TLS("client-ca.crt")); !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	certPEM, err := os.ReadFile(p.TLS("ca.crt"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	keyPEM, err := os.ReadFile(p.TLS("ca.key"))
	if err != nil {
		return false, fmt.Errorf("CA key: %w", err)
	}
	// The key first: a CA certificate without its key is an error at the
	// next start, a key without its certificate is not looked at.
	if err := fileutil.WriteFile(p.TLS("client-ca.key"), keyPEM, 0o600); err != nil {
		return false, err
	}
	return true, fileutil.WriteFile(p.TLS("client-ca.crt"), certPEM, 0o644)
}

func clientLeaf(p Paths, file, user string, groups ...string) pki.Leaf {
	return pki.Leaf{CommonName: user, Organization: groups, Client: true,
		CertFile: p.TLS("client-" + file + ".crt"), KeyFile: p.TLS("client-" + file + ".key")}
}

// reservedNodeNames are the API server's names and addresses that no
// joining node may take for its kubelet's serving certificate, beyond the
// ones the join endpoint always refuses (localhost, kubernetes.default.svc
// and the loopback addresses): the service IP, the name in the cluster
// domain and the --tls-san names. The servers' own addresses are not among
// them: a server's node has them, and its kubelet's certificate is made here.
func reservedNodeNames(cfg *config.Server) []string {
	out := []string{"kubernetes.default.svc." + cfg.ClusterDomain, cfg.ServiceCIDR.Addr().Next().String()}
	for _, san := range cfg.TLSSANs {
		if a, err := netip.ParseAddr(san); err == nil {
			out = append(out, a.String())
		} else {
			out = append(out, san)
		}
	}
	return out
}

// certRenewal checks the server's certificates as often as their lifetime
// asks (daily for a year's) and renews the ones that are due, the node's
// too; the components read the new files without a restart (the API
// server its serving certificate and CAs, every client its certificate,
// the kubelet its serving certificate), and the admin kubeconfig is written
// again. Certificates and CAs near their expiry are warned about.
//
// Every 10 s it also looks at the CA files (a few small reads): when kasa
// certificate rotate-ca changed them, it checks at once, so that every
// certificate the new CAs sign is issued within seconds.
func (s *start) certRenewal() component.Component {
	return component.Func{ComponentName: "certificates", RunFunc: func(ctx context.Context, ready func()) error {
		ready()
		log := s.log.With("component", "certificates")
		warnings := &agent.ExpiryWarnings{Log: log}
		if s.cfg.Agent != nil {
			warnings.Node = s.cfg.NodeName
			warnings.Client, _ = kubernetes.NewForConfig(s.adminRC)
		}
		every := pki.CheckEvery(cmp.Or(s.cfg.CertLifetime, pki.LeafLifetime))
		next := time.Now().Add(every)
		cas := caFiles(s.p)
		sync := &caSync{s: s, log: log, local: cas}
		defer sync.close()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(min(every, filesEvery)):
			}
			if s.shared() {
				sync.run(ctx)
			}
			if now := caFiles(s.p); now != cas {
				log.Info("the CA files changed (kasa certificate rotate-ca): renewing every certificate they sign")
				cas, next = now, time.Time{}
			}
			// Between checks the admin kubeconfig follows its certificate,
			// which kasa certificate rotate may have renewed.
			if time.Now().Before(next) {
				if err := s.writeAdminKubeconfig(); err != nil {
					log.Error("writing the admin kubeconfig failed", "err", err)
				}
				continue
			}
			next = time.Now().Add(every)
			s.checkCerts(ctx, log, warnings)
		}
	}}
}

// caSync keeps the CA files of servers that share a datastore the same:
// a change of this server's (kasa certificate rotate-ca here) goes into
// the cluster's bootstrap data, and a change there (rotate-ca on another
// server) into this server's files, where certRenewal takes it. The data
// is opened (PBKDF2, a tenth of a second) only when its revision moved.
type caSync struct {
	s     *start
	log   *slog.Logger
	kv    *datastore.KV
	rev   int64  // the bootstrap data's revision at the last run
	local string // caFiles at the last run
}

func (c *caSync) close() {
	if c.kv != nil {
		_ = c.kv.Close()
	}
}

// run is one pass; failures are logged and the next pass tries again. A
// datastore that does not answer holds it up for 10 s at most.
func (c *caSync) run(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.pass(ctx); err != nil {
		c.log.Error("keeping the CA files the same as the other servers' failed; trying again", "err", err)
	}
}

func (c *caSync) pass(ctx context.Context) error {
	p := c.s.p
	if c.kv == nil {
		kv, err := datastore.NewKV(c.s.kine.Endpoints())
		if err != nil {
			return err
		}
		c.kv = kv
	}
	blob, rev, ok, err := c.kv.GetRevision(ctx, bootstrap.Key)
	if err != nil || !ok {
		return err
	}
	local := caFiles(p)
	if rev == c.rev && local == c.local {
		return nil
	}
	b, err := os.ReadFile(p.Token())
	if err != nil {
		return err
	}
	t, err := token.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("%s: %w", p.Token(), err)
	}
	d, err := bootstrap.Open(t.Secret, blob)
	if err != nil {
		return err
	}
	mine := map[string][]byte{}
	for _, name := range caFileNames(p.Root) {
		if mine[name], err = os.ReadFile(filepath.Join(p.Root, name)); err != nil {
			return err
		}
	}
	same := true
	for name, b := range mine {
		same = same && bytes.Equal(d.Files[name], b)
	}
	switch {
	case same:
	case local != c.local:
		// Changed here since the last pass: the cluster takes this
		// server's files.
		if err := bootstrap.Update(ctx, c.kv, t.Secret, func(d *bootstrap.Data) { maps.Copy(d.Files, mine) }); err != nil {
			return err
		}
		c.log.Info("the CA files changed on this server: the other servers take them from the datastore")
	default:
		// Changed on another server: this one takes the cluster's.
		theirs := bootstrap.Data{Files: map[string][]byte{}}
		for name, b := range d.Files {
			if isCAFile(name) {
				theirs.Files[name] = b
			}
		}
		if err := theirs.Install(p.Root, replaceRotated(p.Root, d.Files)); err != nil {
			return err
		}
		if err := rehashTokens(p.Server); err != nil {
			return err
		}
		c.log.Info("took the CA files that another server rotated, from the datastore")
	}
	if _, rev, _, err = c.kv.GetRevision(ctx, bootstrap.Key); err != nil {
		return err
	}
	c.rev, c.local = rev, caFiles(p)
	return nil
}

// filesEvery is how often certRenewal looks at the CA files and the admin
// certificate between its checks.
const filesEvery = 10 * time.Second

// caFiles sums the server's CA files and their cross-certificates, to see
// when a rotation changed them.
func caFiles(p Paths) string {
	h := sha256.New()
	for _, name := range caNames {
		for _, f := range []string{p.TLS(name + ".crt"), pki.CrossFile(p.TLS(name + ".crt"))} {
			b, _ := os.ReadFile(f)
			fmt.Fprintf(h, "%s:%d:", f, len(b))
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// caNames are the server's CAs, by the name of their files in tls/.
var caNames = []string{"ca", "client-ca", "kubelet-ca", "request-header-ca"}

// checkCerts is one check of certRenewal. After a rotation of the CAs it
// also gives the join endpoint the new ones, has the controller-manager
// start again to publish the new server CA to every namespace, and writes
// metrics-server's manifest with the new kubelet CA.
func (s *start) checkCerts(ctx context.Context, log *slog.Logger, warnings *agent.ExpiryWarnings) {
	now := s.now()
	c, err := ensureCerts(s.cfg, s.p, now, log)
	if err == nil && s.cfg.Agent != nil {
		err = ensureNodeCerts(s.cfg, datadir.New(s.cfg.DataDir).Agent(), c, now, log)
	}
	if err == nil {
		err = s.writeAdminKubeconfig()
	}
	if err == nil {
		err = s.takeCAs(c, log)
	}
	if err != nil {
		log.Error("checking the certificates failed; the next check tries again", "err", err)
	}
	infos, err := pki.Inventory(now, s.p.TLS(""), datadir.New(s.cfg.DataDir).Agent().TLS(""))
	if err != nil {
		log.Error("listing the certificates failed", "err", err)
		return
	}
	warnings.Check(ctx, infos, now)
}

// takeCAs makes the CAs of c the running server's.
func (s *start) takeCAs(c *certs, log *slog.Logger) error {
	old := s.certs
	s.certs = c
	if s.joins != nil {
		s.joins.SetCAs(c.Server, c.Client, c.Kubelet)
	}
	if old == nil {
		return nil
	}
	if !bytes.Equal(old.Server.CertPEM, c.Server.CertPEM) && s.kcmRestart != nil {
		log.Info("the server CA changed: the controller-manager starts again to publish it as kube-root-ca.crt")
		select {
		case s.kcmRestart <- struct{}{}:
		default:
		}
	}
	if !bytes.Equal(old.KubeletBundle, c.KubeletBundle) {
		log.Info("the kubelet CA changed: metrics-server's manifest trusts the new one")
		return writeAddons(s.cfg, s.p, c)
	}
	return nil
}

// expiry is when the certificate in file expires, for logs.
func expiry(file string) string {
	t, err := pki.NotAfter(file)
	if err != nil {
		return err.Error()
	}
	return t.UTC().Format(time.RFC3339)
}
