package server

import (
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	apiserveroptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	scheduleroptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
)

// componentArgs are the three components' flags for the settings args.
func componentArgs(t *testing.T, args ...string) (api, kcm, sched []string, p Paths) {
	t.Helper()
	cfg := serverConfig(t, args...)
	p = NewPaths(cfg.DataDir)
	return apiserverArgs(cfg, p, []string{"unix://kine.sock", "unix://other.sock"}, true), controllerManagerArgs(cfg, p), schedulerArgs(cfg, p), p
}

// TestComponentArgsFromSettings: the components' flags carry kasa's
// settings and the data dir's paths.
func TestComponentArgsFromSettings(t *testing.T) {
	api, kcm, sched, p := componentArgs(t, "--data-dir", "/srv/kasa", "--https-listen-port", "7443", "--bind-address", "192.0.2.12",
		"--advertise-address", "198.51.100.1", "--cluster-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/12", "--cluster-dns", "10.96.0.10",
		"--cluster-domain", "corp.example", "--service-node-port-range", "20000-22767")
	for _, tt := range []struct {
		component  string
		args       []string
		flag, want string
	}{
		{"kube-apiserver", api, "advertise-address", "198.51.100.1"},
		{"kube-apiserver", api, "bind-address", "192.0.2.12"},
		{"kube-apiserver", api, "secure-port", "7443"},
		{"kube-apiserver", api, "etcd-servers", "unix://kine.sock,unix://other.sock"},
		{"kube-apiserver", api, "storage-backend", "etcd3"},
		{"kube-apiserver", api, "service-cluster-ip-range", "10.96.0.0/12"},
		{"kube-apiserver", api, "service-node-port-range", "20000-22767"},
		{"kube-apiserver", api, "service-account-issuer", "https://kubernetes.default.svc.corp.example"},
		{"kube-apiserver", api, "api-audiences", "https://kubernetes.default.svc.corp.example"},
		{"kube-apiserver", api, "allow-privileged", "true"},
		{"kube-apiserver", api, "tls-cert-file", "/srv/kasa/server/tls/serving-kube-apiserver.crt"},
		{"kube-apiserver", api, "client-ca-file", "/srv/kasa/server/tls/client-ca.crt"},
		{"kube-apiserver", api, "kubelet-certificate-authority", "/srv/kasa/server/tls/kubelet-ca-bundle.crt"},
		{"kube-apiserver", api, "requestheader-client-ca-file", "/srv/kasa/server/tls/request-header-ca.crt"},
		{"kube-apiserver", api, "requestheader-allowed-names", authProxyUser},
		{"kube-apiserver", api, "proxy-client-cert-file", "/srv/kasa/server/tls/client-auth-proxy.crt"},
		{"kube-apiserver", api, "cert-dir", "/srv/kasa/server/tls/temporary-certs"},
		{"kube-apiserver", api, "audit-log-path", "/srv/kasa/server/logs/audit.log"},
		{"kube-apiserver", api, "audit-policy-file", "/srv/kasa/server/etc/audit-policy.yaml"},
		{"kube-apiserver", api, "admission-control-config-file", "/srv/kasa/server/etc/admission.yaml"},
		{"kube-controller-manager", kcm, "kubeconfig", "/srv/kasa/server/cred/controller.kubeconfig"},
		{"kube-controller-manager", kcm, "authentication-kubeconfig", "/srv/kasa/server/cred/controller.kubeconfig"},
		{"kube-controller-manager", kcm, "authorization-kubeconfig", "/srv/kasa/server/cred/controller.kubeconfig"},
		{"kube-controller-manager", kcm, "secure-port", "10257"},
		{"kube-controller-manager", kcm, "cluster-cidr", "10.244.0.0/16"},
		{"kube-controller-manager", kcm, "allocate-node-cidrs", "true"},
		{"kube-controller-manager", kcm, "service-cluster-ip-range", "10.96.0.0/12"},
		{"kube-controller-manager", kcm, "root-ca-file", "/srv/kasa/server/tls/ca.crt"},
		{"kube-controller-manager", kcm, "cluster-signing-kubelet-serving-cert-file", "/srv/kasa/server/tls/kubelet-ca-signer.crt"},
		{"kube-controller-manager", kcm, "cluster-signing-kubelet-serving-key-file", "/srv/kasa/server/tls/kubelet-ca.key"},
		{"kube-controller-manager", kcm, "cluster-signing-kube-apiserver-client-cert-file", "/srv/kasa/server/tls/client-ca-signer.crt"},
		{"kube-controller-manager", kcm, "cluster-signing-legacy-unknown-key-file", "/srv/kasa/server/tls/client-ca.key"},
		{"kube-controller-manager", kcm, "controllers", "*,tokencleaner"},
		{"kube-controller-manager", kcm, "leader-elect", "true"},
		{"kube-scheduler", sched, "kubeconfig", "/srv/kasa/server/cred/scheduler.kubeconfig"},
		{"kube-scheduler", sched, "authentication-kubeconfig", "/srv/kasa/server/cred/scheduler.kubeconfig"},
		{"kube-scheduler", sched, "secure-port", "10259"},
		{"kube-scheduler", sched, "leader-elect", "true"},
	} {
		if got, ok := flagValue(tt.args, tt.flag); got != tt.want || !ok {
			t.Errorf("%s --%s=%q, want %q", tt.component, tt.flag, got, tt.want)
		}
	}
	// No signer uses the server CA, which signs the API server's
	// certificate alone.
	for _, a := range kcm {
		if strings.HasPrefix(a, "--cluster-signing-") && (strings.HasSuffix(a, "="+p.TLS("ca.crt")) || strings.HasSuffix(a, "="+p.TLS("ca.key"))) {
			t.Errorf("kube-controller-manager %s: the server CA signs", a)
		}
	}
	// Each flag once, sorted by name.
	for component, args := range map[string][]string{"kube-apiserver": api, "kube-controller-manager": kcm, "kube-scheduler": sched} {
		names := make([]string, 0, len(args))
		for _, a := range args {
			name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			names = append(names, name)
		}
		if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
			t.Errorf("%s: %v, want each flag once, sorted", component, names)
		}
	}
}

// TestComponentArgsUser: a --kube-*-arg replaces kasa's default of the
// same name (written with or without dashes), a flag kasa does not set is
// added, and one given several times is passed several times.
func TestComponentArgsUser(t *testing.T) {
	api, kcm, sched, _ := componentArgs(t,
		"--kube-apiserver-arg", "--anonymous-auth=true", "--kube-apiserver-arg", "feature-gates=A=true",
		"--kube-apiserver-arg", "oidc-issuer-url=https://id.example", "--kube-apiserver-arg", "feature-gates=B=false",
		"--kube-controller-manager-arg", "secure-port=11257", "--kube-controller-manager-arg", "node-monitor-grace-period=20s",
		"--kube-scheduler-arg", "leader-elect=false", "--kube-scheduler-arg", "bind-address=0.0.0.0")
	count := func(args []string, name string) int {
		n := 0
		for _, a := range args {
			if strings.HasPrefix(a, "--"+name+"=") {
				n++
			}
		}
		return n
	}
	for _, tt := range []struct {
		component  string
		args       []string
		flag, want string
		n          int
	}{
		{"kube-apiserver", api, "anonymous-auth", "true", 1},
		{"kube-apiserver", api, "oidc-issuer-url", "https://id.example", 1},
		{"kube-apiserver", api, "feature-gates", "B=false", 2},
		{"kube-apiserver", api, "authorization-mode", "Node,RBAC", 1},
		{"kube-controller-manager", kcm, "secure-port", "11257", 1},
		{"kube-controller-manager", kcm, "node-monitor-grace-period", "20s", 1},
		{"kube-controller-manager", kcm, "bind-address", "127.0.0.1", 1},
		{"kube-scheduler", sched, "leader-elect", "false", 1},
		{"kube-scheduler", sched, "bind-address", "0.0.0.0", 1},
		{"kube-scheduler", sched, "secure-port", "10259", 1},
	} {
		if got, _ := flagValue(tt.args, tt.flag); got != tt.want || count(tt.args, tt.flag) != tt.n {
			t.Errorf("%s --%s=%q (%d times), want %q (%d times)", tt.component, tt.flag, got, count(tt.args, tt.flag), tt.want, tt.n)
		}
	}
	if !slices.Contains(api, "--feature-gates=A=true") {
		t.Errorf("kube-apiserver: the first --feature-gates is lost: %v", api)
	}
}

// TestUpstreamKnowsComponentArgs: every flag kasa gives a component is one
// the upstream component defines and takes, with its value, so that a
// flag renamed or removed upstream fails here rather than at a start.
func TestUpstreamKnowsComponentArgs(t *testing.T) {
	api, kcm, sched, _ := componentArgs(t)
	parse := func(name string, sets map[string]*pflag.FlagSet, args []string) {
		t.Helper()
		fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
		fs.SetOutput(io.Discard)
		for _, s := range sets {
			fs.AddFlagSet(s)
		}
		if err := fs.Parse(args); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		for _, a := range args {
			flag, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			if f := fs.Lookup(flag); f == nil || !f.Changed {
				t.Errorf("%s: --%s not set", name, flag)
			}
		}
	}

	apiOpts := apiserveroptions.NewServerRunOptions()
	parse("kube-apiserver", apiOpts.Flags().FlagSets, api)

	kcmOpts, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		t.Fatal(err)
	}
	named := kcmOpts.Flags(kcmapp.KnownControllers(), kcmapp.ControllersDisabledByDefault(), kcmapp.ControllerAliases())
	parse("kube-controller-manager", named.FlagSets, kcm)

	schedOpts := scheduleroptions.NewOptions()
	parse("kube-scheduler", schedOpts.Flags.FlagSets, sched)
}
