package server

import (
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/admission"
	apiserverapi "k8s.io/apiserver/pkg/apis/apiserver"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"sigs.k8s.io/yaml"

	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/pki"
)

func testServer() *config.Server {
	return &config.Server{
		HTTPSPort:     6443,
		BindAddress:   netip.MustParseAddr("0.0.0.0"),
		ClusterCIDR:   netip.MustParsePrefix(config.DefaultClusterCIDR),
		ServiceCIDR:   netip.MustParsePrefix(config.DefaultServiceCIDR),
		ClusterDomain: config.DefaultClusterDomain,
	}
}

// TestSecurityArgs: the API server audits to a rotated log and reads the
// Pod Security configuration; every control-plane port takes TLS 1.2 and
// up with kasa's suites; a user's flag still wins.
func TestSecurityArgs(t *testing.T) {
	p := NewPaths("/var/lib/kasa")
	cfg := testServer()
	api := apiserverArgs(cfg, p, []string{"unix://kine.sock"}, true)
	for name, want := range map[string]string{
		"audit-log-path":                              "/var/lib/kasa/server/logs/audit.log",
		"audit-policy-file":                           "/var/lib/kasa/server/etc/audit-policy.yaml",
		"audit-log-maxage":                            "30",
		"audit-log-maxbackup":                         "10",
		"audit-log-maxsize":                           "100",
		"audit-log-compress":                          "true",
		"admission-control-config-file":               "/var/lib/kasa/server/etc/admission.yaml",
		"enable-admission-plugins":                    "NodeRestriction",
		"anonymous-auth":                              "false",
		"profiling":                                   "false",
		"authorization-mode":                          "Node,RBAC",
		"encryption-provider-config":                  "/var/lib/kasa/server/cred/encryption-config.yaml",
		"encryption-provider-config-automatic-reload": "true",
	} {
		if got, _ := flagValue(api, name); got != want {
			t.Errorf("kube-apiserver --%s=%q, want %q", name, got, want)
		}
	}
	// Without the file (encryption never on), no encryption flags.
	if v, ok := flagValue(apiserverArgs(cfg, p, nil, false), "encryption-provider-config"); ok {
		t.Errorf("without encryption: kube-apiserver --encryption-provider-config=%s", v)
	}
	// Certificates and keys: which CA signs what is pkg/server/certs.go's.
	for _, name := range []string{"client-ca-file", "kubelet-client-certificate", "kubelet-client-key",
		"kubelet-certificate-authority", "tls-cert-file", "tls-private-key-file", "service-account-key-file"} {
		if got, _ := flagValue(api, name); !strings.HasPrefix(got, p.TLS("")) {
			t.Errorf("kube-apiserver --%s=%q, want a file in %s", name, got, p.TLS(""))
		}
	}
	// Static tokens, and turning off default admission plugins
	// (ServiceAccount, NamespaceLifecycle...), never.
	for _, name := range []string{"token-auth-file", "disable-admission-plugins", "insecure-port"} {
		if v, ok := flagValue(api, name); ok {
			t.Errorf("kube-apiserver --%s=%s", name, v)
		}
	}
	kcm, sched := controllerManagerArgs(cfg, p), schedulerArgs(cfg, p)
	for _, f := range []struct {
		args              []string
		name, flag, value string
	}{
		{kcm, "kube-controller-manager", "profiling", "false"},
		{kcm, "kube-controller-manager", "bind-address", "127.0.0.1"},
		{kcm, "kube-controller-manager", "use-service-account-credentials", "true"},
		{kcm, "kube-controller-manager", "service-account-private-key-file", "/var/lib/kasa/server/tls/service-account.key"},
		{sched, "kube-scheduler", "profiling", "false"},
		{sched, "kube-scheduler", "bind-address", "127.0.0.1"},
	} {
		if got, _ := flagValue(f.args, f.flag); got != f.value {
			t.Errorf("%s --%s=%q, want %q", f.name, f.flag, got, f.value)
		}
	}
	if got, _ := flagValue(kcm, "root-ca-file"); !strings.HasPrefix(got, p.TLS("")) {
		t.Errorf("kube-controller-manager --root-ca-file=%q", got)
	}
	for component, args := range map[string][]string{
		"kube-apiserver":          api,
		"kube-controller-manager": kcm,
		"kube-scheduler":          sched,
	} {
		if got, _ := flagValue(args, "tls-min-version"); got != "VersionTLS12" {
			t.Errorf("%s --tls-min-version=%q", component, got)
		}
		if got, _ := flagValue(args, "tls-cipher-suites"); got != pki.CipherSuiteFlag() {
			t.Errorf("%s --tls-cipher-suites=%q", component, got)
		}
	}
	cfg.APIServerArgs = []string{"audit-policy-file=/etc/mine.yaml", "tls-min-version=VersionTLS13"}
	api = apiserverArgs(cfg, p, nil, true)
	if got, _ := flagValue(api, "audit-policy-file"); got != "/etc/mine.yaml" {
		t.Errorf("--kube-apiserver-arg audit-policy-file ignored: %q", got)
	}
	if got, _ := flagValue(api, "tls-min-version"); got != "VersionTLS13" {
		t.Errorf("--kube-apiserver-arg tls-min-version ignored: %q", got)
	}
}

// TestSecurityFiles: the files are the server's alone, and the API server's
// own loaders read them: the audit policy records metadata, never a
// Secret's data, and skips the probes and lease renewals; Pod Security
// enforces baseline, warns and audits restricted, and exempts kube-system.
func TestSecurityFiles(t *testing.T) {
	p := NewPaths(t.TempDir())
	if err := writeSecurityFiles(p); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{p.AuditPolicy(), p.AdmissionConfig()} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", f, fi.Mode(), err)
		}
	}
	if fi, err := os.Stat(p.Logs()); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: %v, want a folder of mode 0700", p.Logs(), err)
	}

	pol, err := policy.LoadPolicyFromFile(p.AuditPolicy())
	if err != nil {
		t.Fatal(err)
	}
	eval := policy.NewPolicyRuleEvaluator(pol)
	admin := &user.DefaultInfo{Name: "system:admin", Groups: []string{"system:masters"}}
	node := &user.DefaultInfo{Name: "system:node:n1", Groups: []string{"system:nodes"}}
	for _, tt := range []struct {
		what  string
		attrs authorizer.AttributesRecord
		want  auditinternal.Level
	}{
		{"a Secret created", authorizer.AttributesRecord{User: admin, Verb: "create", Namespace: "default", Resource: "secrets", ResourceRequest: true}, auditinternal.LevelMetadata},
		{"a Secret read", authorizer.AttributesRecord{User: admin, Verb: "get", Namespace: "default", Resource: "secrets", Name: "s", ResourceRequest: true}, auditinternal.LevelMetadata},
		{"a token made", authorizer.AttributesRecord{User: admin, Verb: "create", Namespace: "default", Resource: "serviceaccounts", Subresource: "token", ResourceRequest: true}, auditinternal.LevelMetadata},
		{"a pod created", authorizer.AttributesRecord{User: admin, Verb: "create", Namespace: "default", Resource: "pods", ResourceRequest: true}, auditinternal.LevelMetadata},
		{"a pod exec", authorizer.AttributesRecord{User: admin, Verb: "create", Namespace: "default", Resource: "pods", Subresource: "exec", ResourceRequest: true}, auditinternal.LevelMetadata},
		{"a lease renewed", authorizer.AttributesRecord{User: node, Verb: "update", Namespace: "kube-node-lease", APIGroup: "coordination.k8s.io", Resource: "leases", ResourceRequest: true}, auditinternal.LevelNone},
		{"a lease deleted", authorizer.AttributesRecord{User: admin, Verb: "delete", Namespace: "kube-node-lease", APIGroup: "coordination.k8s.io", Resource: "leases", ResourceRequest: true}, auditinternal.LevelMetadata},
		{"an event", authorizer.AttributesRecord{User: node, Verb: "create", Namespace: "default", Resource: "events", ResourceRequest: true}, auditinternal.LevelNone},
		{"/readyz", authorizer.AttributesRecord{User: admin, Verb: "get", Path: "/readyz"}, auditinternal.LevelNone},
		{"/metrics", authorizer.AttributesRecord{User: admin, Verb: "get", Path: "/metrics"}, auditinternal.LevelMetadata},
	} {
		if got := eval.EvaluatePolicyRule(&tt.attrs).Level; got != tt.want {
			t.Errorf("%s: level %s, want %s", tt.what, got, tt.want)
		}
	}
	for _, r := range pol.Rules {
		if r.Level.GreaterOrEqual(auditinternal.LevelRequest) {
			t.Errorf("a rule records bodies: %+v", r)
		}
	}

	scheme := runtime.NewScheme()
	if err := apiserverapi.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := apiserverv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	provider, err := admission.ReadAdmissionConfiguration([]string{"PodSecurity"}, p.AdmissionConfig(), scheme)
	if err != nil {
		t.Fatal(err)
	}
	r, err := provider.ConfigFor("PodSecurity")
	if err != nil || r == nil {
		t.Fatalf("no PodSecurity configuration: %v", err)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	var psa struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Defaults   map[string]string `json:"defaults"`
		Exemptions struct {
			Namespaces     []string `json:"namespaces"`
			Usernames      []string `json:"usernames"`
			RuntimeClasses []string `json:"runtimeClasses"`
		} `json:"exemptions"`
	}
	if err := yaml.UnmarshalStrict(data, &psa); err != nil {
		t.Fatal(err)
	}
	if psa.APIVersion != "pod-security.admission.config.k8s.io/v1" || psa.Kind != "PodSecurityConfiguration" {
		t.Errorf("PodSecurity configuration %s %s", psa.APIVersion, psa.Kind)
	}
	for mode, level := range map[string]string{"enforce": "baseline", "warn": "restricted", "audit": "restricted"} {
		if psa.Defaults[mode] != level || psa.Defaults[mode+"-version"] != "latest" {
			t.Errorf("defaults.%s = %q (version %q), want %s (latest)", mode, psa.Defaults[mode], psa.Defaults[mode+"-version"], level)
		}
	}
	if !slices.Equal(psa.Exemptions.Namespaces, []string{"kube-system"}) || len(psa.Exemptions.Usernames) != 0 || len(psa.Exemptions.RuntimeClasses) != 0 {
		t.Errorf("exemptions %+v, want the kube-system namespace alone", psa.Exemptions)
	}
}
