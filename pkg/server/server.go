// Package server assembles kasa's control plane: certificates, the kine
// datastore, kube-apiserver, kube-controller-manager and kube-scheduler, all
// upstream code running in this process under one component lifecycle.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/kasa-io/kasa/pkg/component"
	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/fileutil"
	"github.com/kasa-io/kasa/pkg/join/joinserver"
	"github.com/kasa-io/kasa/pkg/memory"
	"github.com/kasa-io/kasa/pkg/pki"
	"github.com/kasa-io/kasa/pkg/token"
)

// StopTimeout bounds a clean stop of the whole control plane.
const StopTimeout = 14 * time.Second

// ErrPortInUse is returned when a port the server needs is taken.
var ErrPortInUse = errors.New("port in use")

// Options are what Run needs besides the settings.
type Options struct {
	Log *slog.Logger
	// Now is the clock used for certificates; time.Now when nil.
	Now func() time.Time
	// OnReady is called once the control plane serves and the admin
	// kubeconfig is written.
	OnReady func()
	// Env is the base environment of child processes (containerd): kasa's
	// own, without its KASA_* settings.
	Env []string
	// FixedGOGC is set when the user gave GOGC: the collector's pace then
	// stays theirs (memory.PaceGC is not started).
	FixedGOGC bool
}

// Run starts the control plane described by cfg and blocks until ctx is
// cancelled or a component fails. It refuses to start, before it changes
// anything, when the data dir is held by another server or a port is taken.
func Run(ctx context.Context, cfg *config.Server, o Options) error {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	// The components' own clients would log every deprecation warning the
	// API server sends them; upstream binaries silence them the same way.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	endFatalGoroutinesWhenStopping(ctx)

	st := &start{cfg: cfg, o: o, log: log, now: now, p: NewPaths(cfg.DataDir)}
	defer st.release()
	m := &component.Manager{ReadyTimeout: 3 * time.Minute, StopTimeout: StopTimeout, Log: log}
	if err := m.Init(ctx, st.steps()); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	return m.Run(ctx, st.components, func() {
		memory.ReleaseLater(ctx, 10*time.Second, log)
		if !o.FixedGOGC {
			memory.PaceGC(ctx, log)
		}
		if o.OnReady != nil {
			o.OnReady()
		}
	})
}

// localAddr is where this node's clients reach the API server.
func localAddr(cfg *config.Server) netip.AddrPort {
	a := cfg.BindAddress
	if a.IsUnspecified() {
		a = netip.MustParseAddr("127.0.0.1")
		if cfg.BindAddress.Is6() {
			a = netip.IPv6Loopback()
		}
	}
	return netip.AddrPortFrom(a, uint16(cfg.HTTPSPort))
}

// checkPorts fails, naming the port and the flag that moves it, when a port
// the control plane listens on is taken.
func checkPorts(cfg *config.Server, kcmArgs, schedArgs []string) error {
	type want struct{ addr, flag string }
	wants := []want{{net.JoinHostPort(cfg.BindAddress.String(), strconv.Itoa(cfg.HTTPSPort)), "--https-listen-port"}}
	for _, c := range []struct {
		args []string
		flag string
	}{{kcmArgs, "--kube-controller-manager-arg secure-port=N"}, {schedArgs, "--kube-scheduler-arg secure-port=N"}} {
		port, _ := flagValue(c.args, "secure-port")
		host, _ := flagValue(c.args, "bind-address")
		if port != "" && port != "0" {
			wants = append(wants, want{net.JoinHostPort(host, port), c.flag})
		}
	}
	if cfg.Agent != nil {
		kubeletPort := "10250"
		for _, a := range cfg.Agent.KubeletArgs {
			if v, ok := strings.CutPrefix(strings.TrimLeft(a, "-"), "port="); ok {
				kubeletPort = v
			}
		}
		wants = append(wants, want{":" + kubeletPort, "--kubelet-arg port=N"})
	}
	for _, w := range wants {
		l, err := net.Listen("tcp", w.addr)
		if err != nil {
			var errno syscall.Errno
			if errors.As(err, &errno) {
				err = errno
			}
			return fmt.Errorf("%w: cannot listen on %s: %w; stop what uses it or pick another port with %s", ErrPortInUse, w.addr, err, w.flag)
		}
		l.Close()
	}
	return nil
}

// checkNewSecrets refuses, before anything is written, a --token or
// --agent-token that would become a new secret of the cluster and is
// shorter than token.MinSecretLength. A secret the data dir holds already
// is kept whatever its length, so that a cluster made before the minimum
// keeps joining nodes (warnWeakSecrets says so at each start).
func checkNewSecrets(p Paths, cfg *config.Server) error {
	for _, s := range []struct {
		flag, file string
		given      config.Secret
	}{{"--token", p.Token(), cfg.Token}, {"--agent-token", p.AgentToken(), cfg.AgentToken}} {
		if s.given == "" {
			continue
		}
		if _, err := os.Stat(s.file); !errors.Is(err, os.ErrNotExist) {
			continue // kept, or unreadable: ensureToken says why
		}
		t, err := token.Parse(s.given.Reveal())
		if err != nil {
			return fmt.Errorf("%s: %w", s.flag, err)
		}
		if err := token.CheckStrength(t.Secret); err != nil {
			return fmt.Errorf("%s: %w", s.flag, err)
		}
	}
	return nil
}

// warnWeakSecrets warns about kept secrets shorter than
// token.MinSecretLength: they still join nodes.
func warnWeakSecrets(log *slog.Logger, server, agent token.Token) {
	if token.CheckStrength(server.Secret) != nil {
		log.Warn(fmt.Sprintf("the server token's secret has fewer than %d characters: it still joins nodes, but is easier to guess; kasa token rotate gives the cluster a strong one", token.MinSecretLength))
	}
	if agent.Secret != "" && token.CheckStrength(agent.Secret) != nil {
		log.Warn(fmt.Sprintf("the agent token's secret has fewer than %d characters: it still joins agents, but is easier to guess; kasa token rotate --agent gives the cluster a strong one", token.MinSecretLength))
	}
}

// ensureToken writes the server token on first start and returns it. On
// later starts it returns the kept one, the cluster's, whatever --token
// says: the secret of a cluster is set once and changed only by kasa token
// rotate, and a service whose environment still holds an older or another
// token must start all the same rather than be refused, and restarted by
// systemd, forever. ignored is true when a --token was given and is not
// the kept one; it joins nothing (warnIgnoredTokens says so).
func ensureToken(file string, given config.Secret, ca *pki.CA) (t token.Token, ignored bool, err error) {
	var want token.Token
	if given != "" {
		if want, err = token.Parse(given.Reveal()); err != nil {
			return token.Token{}, false, fmt.Errorf("--token: %w", err)
		}
	}
	if stored, ignored, found, err := keptToken(file, "server token", want, ca); err != nil || found {
		return stored, ignored, err
	}
	// The first start: the given secret becomes the cluster's.
	if want.CAHash != "" && !token.MatchesCA(want.CAHash, ca.CertPEM) {
		return token.Token{}, false, errors.New("--token names a different cluster CA than this server's: give a secret of your own, or the token of this server's cluster")
	}
	secret := want.Secret
	if secret == "" {
		if secret, err = token.NewSecret(); err != nil {
			return token.Token{}, false, err
		}
	}
	t = token.Token{CAHash: token.CAHash(ca.CertPEM), User: token.ServerUser, Secret: secret}
	return t, false, fileutil.WriteFile(file, []byte(t.String()+"\n"), 0o600)
}

// keptToken reads the token kept in file (found is false when there is
// none). ignored is true when want, a given token, is not the kept one:
// another secret, or another cluster's CA.
func keptToken(file, what string, want token.Token, ca *pki.CA) (stored token.Token, ignored, found bool, err error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return token.Token{}, false, false, nil
	}
	if err != nil {
		return token.Token{}, false, false, fmt.Errorf("%s: %w", what, err)
	}
	if stored, err = token.Parse(string(data)); err != nil {
		return token.Token{}, false, false, fmt.Errorf("%s %s: %w", what, file, err)
	}
	ignored = want.Secret != "" && (!token.Equal(want.Secret, stored.Secret) || (want.CAHash != "" && !token.MatchesCA(want.CAHash, ca.CertPEM)))
	return stored, ignored, true, nil
}

// ensureAgentToken writes the agent token given with --agent-token, in its
// full form, to file when file has none; otherwise, and without the flag,
// it returns the one kept there, if any: the agent secret too changes only
// by kasa token rotate --agent. ignored is true when an --agent-token was
// given and is not the kept one.
func ensureAgentToken(file string, given config.Secret, ca *pki.CA) (t token.Token, ignored bool, err error) {
	var want token.Token
	if given != "" {
		if want, err = token.Parse(given.Reveal()); err != nil {
			return token.Token{}, false, fmt.Errorf("--agent-token: %w", err)
		}
		if want.Bootstrap {
			return token.Token{}, false, errors.New("--agent-token: that is a bootstrap token (from kasa token create), which joins by itself; give a secret of your own")
		}
	}
	if stored, ignored, found, err := keptToken(file, "agent token", want, ca); err != nil || found || given == "" {
		return stored, ignored, err
	}
	if want.CAHash != "" && !token.MatchesCA(want.CAHash, ca.CertPEM) {
		return token.Token{}, false, errors.New("--agent-token names a different cluster CA than this server's")
	}
	t = token.Token{CAHash: token.CAHash(ca.CertPEM), User: token.AgentUser, Secret: want.Secret}
	return t, false, fileutil.WriteFile(file, []byte(t.String()+"\n"), 0o600)
}

// warnIgnoredTokens says, once per start, that a --token or --agent-token
// (KASA_TOKEN, KASA_AGENT_TOKEN) was not this server's and that the server
// runs with its own: where that one is, and how to mend the setting. It
// never names a secret. A --token that is this server's agent secret is
// named as such.
func warnIgnoredTokens(log *slog.Logger, p Paths, server, agent bool, given config.Secret, stored, storedAgent token.Token) {
	const fix = "; put that file's token in the service's environment (KASA_TOKEN in /etc/systemd/system/kasa.service.env for an installed server, then systemctl restart kasa) or remove the setting"
	if server {
		what := "is not this cluster's server token (it was rotated since with kasa token rotate, or the token was made elsewhere, for example by kasa up on another workstation): it joins nothing"
		if t, err := token.Parse(given.Reveal()); err == nil && storedAgent.Secret != "" && token.Equal(t.Secret, storedAgent.Secret) {
			what = "is this cluster's agent token, not its server token: it joins agents only"
		} else if err == nil && t.CAHash != "" && t.CAHash != stored.CAHash {
			what = "names another cluster's CA: it is not this cluster's token"
		}
		log.Warn("the given --token (KASA_TOKEN) " + what + ", and this server starts with its own token, kept in " + p.Token() + fix)
	}
	if agent {
		log.Warn("the given --agent-token (KASA_AGENT_TOKEN) is not this cluster's agent token (rotated since with kasa token rotate --agent, or made elsewhere): it joins nothing, and this server keeps its own, in " + p.AgentToken() + strings.Replace(fix, "KASA_TOKEN", "KASA_AGENT_TOKEN", 1))
	}
}

// joinTokens records the hashes of the server and agent secrets in the
// cluster, where the join endpoint checks them, once the API serves.
func joinTokens(store *joinserver.Store, server, agent token.Token, p Paths, log *slog.Logger) component.Component {
	return component.Func{ComponentName: "join-tokens", RunFunc: func(ctx context.Context, ready func()) error {
		var st joinserver.TokenState
		err := component.PollReady(ctx, time.Second, func(ctx context.Context) error {
			var err error
			st, err = store.EnsureTokens(ctx, server.Secret, agent.Secret)
			return err
		}, nil)
		if err != nil || ctx.Err() != nil {
			return err
		}
		if st.ServerStale {
			log.Warn("the server token in " + p.Token() + " is not the cluster's current one (rotated on another server?): it does not join nodes; kasa token rotate on this server sets a new one")
		}
		if st.AgentKept {
			log.Warn("--agent-token is not the cluster's agent token, which was rotated since and stays; drop the flag or rotate again")
		}
		ready()
		<-ctx.Done()
		return nil
	}}
}

// apiserverArgs are the API server's flags; encryption says whether the
// encryption configuration exists (encryption is on, or was).
func apiserverArgs(cfg *config.Server, p Paths, etcdServers []string, encryption bool) []string {
	issuer := "https://kubernetes.default.svc." + cfg.ClusterDomain
	args := map[string]string{
		"advertise-address": cfg.AdvertiseAddress.String(),
		"bind-address":      cfg.BindAddress.String(),
		"secure-port":       strconv.Itoa(cfg.HTTPSPort),
		"etcd-servers":      strings.Join(etcdServers, ","),
		// kine compacts when the API server asks, to the revision of the
		// ask before: upstream's 5 minutes keep about 10 minutes of writes
		// in SQLite (a gigabyte under a steady churn on 2 cores), 1 minute
		// about 2 (make bench's churn figures).
		"etcd-compaction-interval":           "1m",
		"storage-backend":                    "etcd3",
		"authorization-mode":                 "Node,RBAC",
		"enable-admission-plugins":           "NodeRestriction",
		"anonymous-auth":                     "false",
		"allow-privileged":                   "true",
		"client-ca-file":                     p.TLS("client-ca.crt"),
		"tls-cert-file":                      p.TLS("serving-kube-apiserver.crt"),
		"tls-private-key-file":               p.TLS("serving-kube-apiserver.key"),
		"kubelet-client-certificate":         p.TLS("client-kube-apiserver.crt"),
		"kubelet-client-key":                 p.TLS("client-kube-apiserver.key"),
		"kubelet-certificate-authority":      p.TLS("kubelet-ca-bundle.crt"),
		"kubelet-preferred-address-types":    "InternalIP,ExternalIP,Hostname",
		"service-account-key-file":           p.TLS("service-account.key"),
		"service-account-signing-key-file":   p.TLS("service-account.key"),
		"service-account-issuer":             issuer,
		"api-audiences":                      issuer,
		"service-cluster-ip-range":           cfg.ServiceCIDR.String(),
		"service-node-port-range":            cfg.NodePortRange,
		"requestheader-client-ca-file":       p.TLS("request-header-ca.crt"),
		"requestheader-allowed-names":        authProxyUser,
		"requestheader-extra-headers-prefix": "X-Remote-Extra-",
		"requestheader-group-headers":        "X-Remote-Group",
		"requestheader-username-headers":     "X-Remote-User",
		"proxy-client-cert-file":             p.TLS("client-auth-proxy.crt"),
		"proxy-client-key-file":              p.TLS("client-auth-proxy.key"),
		"cert-dir":                           p.TLS("temporary-certs"),
		"profiling":                          "false",
		"tls-min-version":                    pki.TLSMinVersion,
		"tls-cipher-suites":                  pki.CipherSuiteFlag(),
		"admission-control-config-file":      p.AdmissionConfig(),
		"audit-policy-file":                  p.AuditPolicy(),
		"audit-log-path":                     p.AuditLog(),
		"audit-log-maxsize":                  auditMaxSizeMB,
		"audit-log-maxbackup":                auditMaxBackups,
		"audit-log-maxage":                   auditMaxAgeDays,
		"audit-log-compress":                 "true",
	}
	if encryption {
		args["encryption-provider-config"] = p.EncryptionConfig()
		args["encryption-provider-config-automatic-reload"] = "true"
	}
	return flagArgs(args, cfg.APIServerArgs)
}

func controllerManagerArgs(cfg *config.Server, p Paths) []string {
	kubeconfig := p.Cred("controller.kubeconfig")
	return flagArgs(map[string]string{
		"kubeconfig":                kubeconfig,
		"authentication-kubeconfig": kubeconfig,
		"authorization-kubeconfig":  kubeconfig,
		"bind-address":              "127.0.0.1",
		"secure-port":               "10257",
		"cluster-cidr":              cfg.ClusterCIDR.String(),
		"allocate-node-cidrs":       "true",
		"service-cluster-ip-range":  cfg.ServiceCIDR.String(),
		// Each signer with the CA of its kind; none with the server CA,
		// which signs the API server's certificate alone.
		"cluster-signing-kube-apiserver-client-cert-file": p.TLS("client-ca-signer.crt"),
		"cluster-signing-kube-apiserver-client-key-file":  p.TLS("client-ca.key"),
		"cluster-signing-kubelet-client-cert-file":        p.TLS("client-ca-signer.crt"),
		"cluster-signing-kubelet-client-key-file":         p.TLS("client-ca.key"),
		"cluster-signing-kubelet-serving-cert-file":       p.TLS("kubelet-ca-signer.crt"),
		"cluster-signing-kubelet-serving-key-file":        p.TLS("kubelet-ca.key"),
		"cluster-signing-legacy-unknown-cert-file":        p.TLS("client-ca-signer.crt"),
		"cluster-signing-legacy-unknown-key-file":         p.TLS("client-ca.key"),
		"root-ca-file":                     p.TLS("ca.crt"),
		"service-account-private-key-file": p.TLS("service-account.key"),
		"use-service-account-credentials":  "true",
		"configure-cloud-routes":           "false",
		"leader-elect":                     "true",
		"controllers":                      "*,tokencleaner",
		"profiling":                        "false",
		"tls-min-version":                  pki.TLSMinVersion,
		"tls-cipher-suites":                pki.CipherSuiteFlag(),
	}, cfg.ControllerArgs)
}

func schedulerArgs(cfg *config.Server, p Paths) []string {
	kubeconfig := p.Cred("scheduler.kubeconfig")
	return flagArgs(map[string]string{
		"kubeconfig":                kubeconfig,
		"authentication-kubeconfig": kubeconfig,
		"authorization-kubeconfig":  kubeconfig,
		"bind-address":              "127.0.0.1",
		"secure-port":               "10259",
		"leader-elect":              "true",
		"profiling":                 "false",
		"tls-min-version":           pki.TLSMinVersion,
		"tls-cipher-suites":         pki.CipherSuiteFlag(),
	}, cfg.SchedulerArgs)
}

// stopping is set once the server has been asked to stop.
var stopping atomic.Bool

// endFatalGoroutinesWhenStopping: while the server stops, a klog.Fatal in
// an upstream component's background goroutine ends that goroutine instead
// of the process. The controller manager builds its controllers' clients
// with ClientOrDie while it starts them; a stop that comes during that
// start takes the API server away under it, and the fatal error would turn
// an orderly stop into exit code 255 with the later components not stopped.
func endFatalGoroutinesWhenStopping(ctx context.Context) {
	exit := klog.OsExit
	klog.OsExit = func(code int) {
		if stopping.Load() {
			runtime.Goexit()
		}
		exit(code)
	}
	go func() {
		<-ctx.Done()
		stopping.Store(true)
	}()
}
