package server

import (
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kasa-io/kasa/pkg/pki"
)

// TestServerNames: the API server's certificate holds every name and
// address a client may reach it by: the loopback addresses and localhost,
// the service's names in the cluster domain and its IP, the node's name
// and addresses, the advertised and bound addresses and every --tls-san,
// each once.
func TestServerNames(t *testing.T) {
	for _, tt := range []struct {
		name    string
		args    []string
		dns     []string
		ips     []string
		missing []string // addresses that must not be there
	}{
		{
			name: "defaults",
			dns:  []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost", "node-1"},
			ips:  []string{"127.0.0.1", "::1", "10.43.0.1", "192.0.2.10"},
			// Listening on every address names none of them.
			missing: []string{"0.0.0.0"},
		},
		{
			name: "every setting",
			args: []string{"--node-name", "CP-1", "--node-ip", "192.0.2.11,2001:db8::11", "--advertise-address", "198.51.100.1",
				"--bind-address", "192.0.2.12", "--service-cidr", "10.96.0.0/12", "--cluster-dns", "10.96.0.10", "--cluster-domain", "corp.example",
				"--tls-san", "api.example.com,203.0.113.5", "--tls-san", "2001:DB8::5", "--tls-san", "localhost"},
			dns: []string{"api.example.com", "cp-1", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.corp.example", "localhost"},
			ips: []string{"127.0.0.1", "::1", "10.96.0.1", "198.51.100.1", "192.0.2.11", "2001:db8::11", "192.0.2.12", "203.0.113.5", "2001:db8::5"},
			// The default route's address is not the node's when --node-ip
			// is given; the default service IP is not this cluster's.
			missing: []string{"192.0.2.10", "10.43.0.1"},
		},
		{
			name: "the node IP is the advertised and bound one",
			args: []string{"--bind-address", "192.0.2.10", "--tls-san", "192.0.2.10,127.0.0.1"},
			dns:  []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost", "node-1"},
			ips:  []string{"127.0.0.1", "::1", "10.43.0.1", "192.0.2.10"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dns, ips := serverNames(serverConfig(t, tt.args...))
			if !slices.Equal(dns, tt.dns) {
				t.Errorf("DNS names %v, want %v", dns, tt.dns)
			}
			var got []string
			for _, ip := range ips {
				got = append(got, ip.String())
			}
			// Every address once: the certificate's list is compared as a
			// set when it is renewed.
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tt.ips))
			if !slices.Equal(got, want) {
				t.Errorf("IPs %v, want %v", got, want)
			}
			for _, m := range tt.missing {
				if slices.Contains(got, m) {
					t.Errorf("IPs %v hold %s", got, m)
				}
			}
		})
	}
}

// TestReservedNodeNames: the names of the API server that a joining node
// may not put in its kubelet's certificate are the service's name in the
// cluster domain, its IP and every --tls-san (IPs in their canonical form);
// the server's own node name and addresses are not, since its node has
// them.
func TestReservedNodeNames(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want []string
	}{
		{"defaults", nil, []string{"kubernetes.default.svc.cluster.local", "10.43.0.1"}},
		{"settings", []string{"--cluster-domain", "corp.example", "--service-cidr", "172.20.0.0/16", "--cluster-dns", "172.20.0.10",
			"--tls-san", "api.example.com,203.0.113.5,2001:DB8:0::5", "--node-ip", "192.0.2.11", "--advertise-address", "198.51.100.1"},
			[]string{"kubernetes.default.svc.corp.example", "172.20.0.1", "api.example.com", "203.0.113.5", "2001:db8::5"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := serverConfig(t, tt.args...)
			got := reservedNodeNames(cfg)
			if !slices.Equal(got, tt.want) {
				t.Errorf("%v, want %v", got, tt.want)
			}
			for _, own := range []string{cfg.NodeName, cfg.AdvertiseAddress.String(), cfg.NodeIPs[0].String()} {
				if slices.Contains(got, own) {
					t.Errorf("%v reserves the server's own node name or address %s", got, own)
				}
			}
		})
	}
}

// TestClientLeaf: a client certificate of the control plane is for its
// user and groups, for client authentication only, in the TLS folder.
func TestClientLeaf(t *testing.T) {
	p := NewPaths("/var/lib/kasa")
	for _, tt := range []struct {
		file, user string
		groups     []string
	}{
		{"admin", adminUser, []string{mastersGroup}},
		{"controller", controllerUser, nil},
		{"auth-proxy", authProxyUser, nil},
	} {
		l := clientLeaf(p, tt.file, tt.user, tt.groups...)
		if l.CommonName != tt.user || !slices.Equal(l.Organization, tt.groups) || !l.Client || l.Server ||
			len(l.DNSNames) != 0 || len(l.IPs) != 0 {
			t.Errorf("%s: %+v", tt.file, l)
		}
		if l.CertFile != "/var/lib/kasa/server/tls/client-"+tt.file+".crt" || l.KeyFile != "/var/lib/kasa/server/tls/client-"+tt.file+".key" {
			t.Errorf("%s: files %s %s", tt.file, l.CertFile, l.KeyFile)
		}
	}
}

// TestEnsureCerts: each CA signs one kind of certificate: the server CA
// the API server's serving certificate (with serverNames), the client CA
// the control plane's client certificates, each with its identity, the
// request-header CA the auth proxy's; the kubelet bundle is the kubelet
// CA. A second start writes nothing and keeps the CAs.
func TestEnsureCerts(t *testing.T) {
	p := NewPaths(t.TempDir())
	cfg := serverConfig(t, "--tls-san", "api.example.com")
	now := time.Now()
	c, err := ensureCerts(cfg, p, now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	cas := map[string]*pki.CA{"server": c.Server, "client": c.Client, "kubelet": c.Kubelet}
	for a, ca := range cas {
		for b, other := range cas {
			if a != b && ca.Cert.Equal(other.Cert) {
				t.Errorf("the %s and %s CAs are one", a, b)
			}
		}
	}
	proxyPEM, err := os.ReadFile(p.TLS("request-header-ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		file, cn string
		caPEM    []byte
		orgs     []string
		usage    x509.ExtKeyUsage
	}{
		{"serving-kube-apiserver", "kube-apiserver", c.Server.CertPEM, nil, x509.ExtKeyUsageServerAuth},
		{"client-admin", adminUser, c.Client.CertPEM, []string{mastersGroup}, x509.ExtKeyUsageClientAuth},
		{"client-kube-apiserver", apiserverUser, c.Client.CertPEM, []string{mastersGroup}, x509.ExtKeyUsageClientAuth},
		{"client-controller", controllerUser, c.Client.CertPEM, nil, x509.ExtKeyUsageClientAuth},
		{"client-scheduler", schedulerUser, c.Client.CertPEM, nil, x509.ExtKeyUsageClientAuth},
		{"client-auth-proxy", authProxyUser, proxyPEM, nil, x509.ExtKeyUsageClientAuth},
	} {
		if _, err := pki.CheckLeaf(p.TLS(tt.file+".crt"), p.TLS(tt.file+".key"), tt.caPEM, tt.cn); err != nil {
			t.Errorf("%s: %v", tt.file, err)
			continue
		}
		cert, err := pki.ReadCert(p.TLS(tt.file + ".crt"))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cert.Subject.Organization, tt.orgs) || !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{tt.usage}) {
			t.Errorf("%s: organization %v, usage %v", tt.file, cert.Subject.Organization, cert.ExtKeyUsage)
		}
	}
	serving, err := pki.ReadCert(p.TLS("serving-kube-apiserver.crt"))
	if err != nil {
		t.Fatal(err)
	}
	dns, ips := serverNames(cfg)
	if !slices.Equal(serving.DNSNames, dns) || !slices.EqualFunc(serving.IPAddresses, ips, net.IP.Equal) {
		t.Errorf("serving certificate for %v %v, want %v %v", serving.DNSNames, serving.IPAddresses, dns, ips)
	}
	bundle, err := os.ReadFile(p.TLS("kubelet-ca-bundle.crt"))
	if err != nil || string(bundle) != string(c.Kubelet.CertPEM) || string(c.KubeletBundle) != string(bundle) {
		t.Errorf("kubelet bundle: %v, want the kubelet CA alone", err)
	}
	if key, err := os.ReadFile(p.TLS("service-account.key")); err != nil || !strings.Contains(string(key), "PRIVATE KEY") {
		t.Errorf("service-account.key: %v", err)
	}

	// A second start keeps everything.
	var logs strings.Builder
	again, err := ensureCerts(cfg, p, now.Add(time.Hour), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Server.Cert.Equal(c.Server.Cert) || !again.Client.Cert.Equal(c.Client.Cert) || !again.Kubelet.Cert.Equal(c.Kubelet.Cert) {
		t.Error("a CA was replaced")
	}
	if logs.Len() != 0 {
		t.Errorf("a second start wrote:\n%s", logs.String())
	}
}

// TestEnsureCertsOneCA: a cluster made with one CA keeps it as its server
// and client CA, says so, and gets a kubelet CA of its own; the kubelet
// bundle holds both, for the nodes' serving certificates the old CA
// signed.
func TestEnsureCertsOneCA(t *testing.T) {
	p := NewPaths(t.TempDir())
	now := time.Now()
	old, err := pki.LoadOrCreateCA(p.TLS("ca.crt"), p.TLS("ca.key"), "kasa-ca", pki.ECDSAP256, now)
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	c, err := ensureCerts(serverConfig(t), p, now, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Server.Cert.Equal(old.Cert) || !c.Client.Cert.Equal(old.Cert) || c.Kubelet.Cert.Equal(old.Cert) {
		t.Error("want the old CA as server and client CA, and a new kubelet CA")
	}
	if !strings.Contains(logs.String(), "made with one CA") {
		t.Errorf("no word of the upgrade:\n%s", logs.String())
	}
	if want := string(c.Kubelet.CertPEM) + string(old.CertPEM); string(c.KubeletBundle) != want {
		t.Error("the kubelet bundle is not the kubelet CA and the old CA")
	}
	if _, err := pki.CheckLeaf(p.TLS("client-admin.crt"), p.TLS("client-admin.key"), old.CertPEM, adminUser); err != nil {
		t.Error(err)
	}
}

// TestReplaceRotated: a server takes the cluster's CA files over its own
// only when they share a certificate with its own (a rotation started or
// finished on another server), the CA's key and cross-certificate with
// them; another cluster's CA, and any other file, it never takes.
func TestReplaceRotated(t *testing.T) {
	now := time.Now()
	root := t.TempDir()
	p := NewPaths(root)
	if err := os.MkdirAll(p.TLS(""), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadOrCreateCA(p.TLS("ca.crt"), p.TLS("ca.key"), "kasa-server-ca", pki.ECDSAP256, now); err != nil {
		t.Fatal(err)
	}
	mine, _ := os.ReadFile(p.TLS("ca.crt"))
	// The rotation, as another server made it: the same files, rotated.
	other := t.TempDir()
	for _, f := range []string{"ca.crt", "ca.key"} {
		b, _ := os.ReadFile(p.TLS(f))
		if err := os.WriteFile(other+"/"+f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pki.RotateCA(other+"/ca.crt", other+"/ca.key", now); err != nil {
		t.Fatal(err)
	}
	rotated, _ := os.ReadFile(other + "/ca.crt")
	stranger := t.TempDir()
	if _, err := pki.LoadOrCreateCA(stranger+"/ca.crt", stranger+"/ca.key", "kasa-server-ca", pki.ECDSAP256, now); err != nil {
		t.Fatal(err)
	}
	strangers, _ := os.ReadFile(stranger + "/ca.crt")
	for _, tc := range []struct {
		what  string
		files map[string][]byte
		name  string
		want  bool
	}{
		{"the rotated CA", map[string][]byte{"tls/ca.crt": rotated}, "tls/ca.crt", true},
		{"its key", map[string][]byte{"tls/ca.crt": rotated}, "tls/ca.key", true},
		{"its cross-certificate", map[string][]byte{"tls/ca.crt": rotated}, "tls/ca-cross.crt", true},
		{"another cluster's CA", map[string][]byte{"tls/ca.crt": strangers}, "tls/ca.crt", false},
		{"another cluster's key", map[string][]byte{"tls/ca.crt": strangers}, "tls/ca.key", false},
		{"a file that is not a CA's", map[string][]byte{"tls/ca.crt": rotated}, "tls/service-account.key", false},
	} {
		if got := replaceRotated(p.Root, tc.files)(tc.name, mine); got != tc.want {
			t.Errorf("%s: replaced %t, want %t", tc.what, got, tc.want)
		}
	}
}
