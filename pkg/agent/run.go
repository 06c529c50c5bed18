package agent

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	"github.com/kasa-io/kasa/pkg/component"
	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/datadir"
	"github.com/kasa-io/kasa/pkg/fileutil"
	"github.com/kasa-io/kasa/pkg/join"
	"github.com/kasa-io/kasa/pkg/join/joinclient"
	"github.com/kasa-io/kasa/pkg/memory"
	"github.com/kasa-io/kasa/pkg/pki"
	"github.com/kasa-io/kasa/pkg/token"
)

// releaseDelay is how long after the node is ready its start-up code is
// released (memory.ReleaseStartupCode): time for the parts' own start-up
// that follows their readiness.
const releaseDelay = 10 * time.Second

// StopTimeout bounds a clean stop of an agent's parts.
const StopTimeout = 14 * time.Second

// Options are what Run needs besides the settings.
type Options struct {
	Log *slog.Logger
	// Env is the base environment of containerd, without KASA_* settings.
	Env []string
	// OnReady is called once every part of the node is ready.
	OnReady func()
}

// State is what an agent keeps of its join (<data-dir>/agent/etc/join.json).
type State struct {
	NodeName string       `json:"nodeName"`
	Servers  []string     `json:"servers"`
	Cluster  join.Cluster `json:"cluster"`
}

// Run joins this machine to the cluster at cfg.Server (unless it has
// joined before and its certificates are current), then runs its node's
// parts behind a local load balancer until ctx ends.
func Run(ctx context.Context, cfg *config.AgentNode, o Options) error {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	np := datadir.New(cfg.DataDir).Agent()
	m := &component.Manager{ReadyTimeout: 3 * time.Minute, StopTimeout: StopTimeout, Log: log}
	var locks []*fileutil.Lock
	defer func() {
		for _, l := range slices.Backward(locks) {
			l.Release()
		}
	}()
	var state *State
	err := m.Init(ctx, []component.Step{
		{Name: "lock data dir", Run: func(context.Context) error {
			lock, err := fileutil.LockFile(np.Lock(), func(err error) error {
				return fmt.Errorf("data dir %s is not usable: %w (pick another with --data-dir)", cfg.DataDir, err)
			}, func(pid string) error {
				return fmt.Errorf("another kasa agent (pid %s) is running on %s; stop it first or pick another --data-dir", pid, cfg.DataDir)
			})
			if err == nil {
				locks = append(locks, lock)
			}
			return err
		}},
		{Name: "lock node", Run: func(context.Context) error {
			lock, err := LockNode("")
			if err == nil {
				locks = append(locks, lock)
			}
			return err
		}},
		// A join waits, with backoff, for a server that cannot be reached.
		{Name: "join", Timeout: -1, Run: func(ctx context.Context) (err error) {
			state, err = bootstrap(ctx, cfg, np, log)
			return err
		}},
	})
	if err != nil || ctx.Err() != nil {
		return startErr(ctx, err)
	}
	lb := &LoadBalancer{
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.LBServerPort)),
		Log:  log.With("component", "load-balancer"),
	}
	given := hostPort(cfg.Server)
	lb.SetServers(append(slices.Clone(state.Servers), given))
	start := NewStart(Node{
		DataDir:      cfg.DataDir,
		Name:         state.NodeName,
		IP:           cfg.NodeIPs[0],
		Agent:        cfg.Agent,
		ServerURL:    "https://" + lb.Addr,
		CAFile:       np.TLS("ca.crt"),
		ClientCAFile: np.TLS("client-ca.crt"),
		Cluster:      state.Cluster,
		Env:          o.Env,
		Log:          log,
	})
	if err := m.Init(ctx, start.Steps()); err != nil {
		return startErr(ctx, err)
	}
	node := start.Components()
	watcher := &serverWatcher{lb: lb, given: given, state: state, file: np.JoinState(),
		kubeconfig: np.Kubeconfig("kube-proxy"), log: log.With("component", "load-balancer")}
	components := append([]component.Component{lb}, node...)
	components = append(components, watcher, certRenewal(cfg, np, "https://"+lb.Addr, log))
	return m.Run(ctx, components, func() {
		memory.ReleaseLater(ctx, releaseDelay, log)
		if o.OnReady != nil {
			o.OnReady()
		}
	})
}

// startErr is the outcome of a start that ended before the components ran:
// none when the start was cancelled (a stop asked for while starting).
func startErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// hostPort returns the host:port of an https URL validated by config.
func hostPort(server string) string {
	u, err := url.Parse(server)
	if err != nil {
		return server
	}
	return u.Host
}

// bootstrap returns the agent's join state, joining first when this
// machine has not joined as cfg.NodeName yet, or its certificates are due
// for renewal and a token is at hand.
func bootstrap(ctx context.Context, cfg *config.AgentNode, np datadir.Agent, log *slog.Logger) (*State, error) {
	stateFile := np.JoinState()
	var state State
	if b, err := os.ReadFile(stateFile); err == nil {
		if err := json.Unmarshal(b, &state); err != nil {
			return nil, fmt.Errorf("%s: %w (remove it to join again)", stateFile, err)
		}
	}
	var certErr error
	if state.NodeName == cfg.NodeName {
		first, err := checkNodeCerts(np, cfg.NodeName)
		moved := ""
		if err == nil {
			moved, err = servingMoved(np, cfg.NodeName, nodeIPs(cfg))
		}
		if err == nil && moved == "" && !splitCAs(np) {
			moved = "the node's certificates were signed by the cluster's one CA; its client and kubelet CAs are separate now"
		}
		certErr = err
		switch {
		case err == nil && moved == "" && !pki.RenewDue(first, time.Now()):
			log.Info("joined before; using the node's certificates", "node", cfg.NodeName, "expires", first.NotAfter.Format(time.DateTime))
			return &state, nil
		case err == nil && time.Now().Before(first.NotAfter):
			// Due for renewal, or the node's addresses changed: the node's
			// own client certificate renews them; a token is the fallback.
			if moved != "" {
				log.Info("renewing the node's certificates", "node", cfg.NodeName, "reason", moved)
			}
			renewed, err := requestCerts(ctx, cfg, np, log, nil)
			if err == nil {
				return renewed, nil
			}
			switch {
			case cfg.Token == "" && errors.Is(err, join.ErrNodeDeleted):
				return nil, fmt.Errorf("cannot renew the node's certificates: %w", err)
			case cfg.Token == "" && moved != "":
				log.Warn("the node's certificates need renewing and could not be renewed; until they are, the API servers may not verify its kubelet (logs, exec)", "reason", moved, "err", err)
				return &state, nil
			case cfg.Token == "":
				log.Warn("the node's certificates expire soon and could not be renewed; they are used until then", "expires", first.NotAfter.Format(time.DateTime), "err", err)
				return &state, nil
			}
			log.Info("renewal with the node's certificate failed; joining again with the token", "err", err)
		case err != nil:
			log.Info("joining again", "reason", err)
		}
	} else if state.NodeName != "" {
		log.Info("joining under a new name", "was", state.NodeName, "now", cfg.NodeName)
	}
	if cfg.Token == "" {
		const where = "a server's token is in its <data-dir>/server/token, and kasa token create on a server makes one that joins agents"
		if certErr != nil {
			return nil, fmt.Errorf("the node's certificates are not usable (%w): give --token (or KASA_TOKEN, --token-file) to join again; %s", certErr, where)
		}
		return nil, errors.New("this node has not joined the cluster yet: give --token (or KASA_TOKEN, --token-file); " + where)
	}
	t, err := token.Parse(cfg.Token.Reveal())
	if err != nil {
		return nil, fmt.Errorf("--token: %w", err)
	}
	return requestCerts(ctx, cfg, np, log, &t)
}

// requestCerts joins once, with the token t, or, when t is nil, renews the node's
// certificates with its kubelet client certificate; it writes the CA, the
// certificates and the join state.
func requestCerts(ctx context.Context, cfg *config.AgentNode, np datadir.Agent, log *slog.Logger, t *token.Token) (*State, error) {
	password, err := nodePassword(np.NodePassword())
	if err != nil {
		return nil, err
	}
	req := join.Request{NodeName: cfg.NodeName, Role: join.RoleAgent, Password: password, Keys: map[string]string{}}
	for _, a := range cfg.NodeIPs {
		req.Addresses = append(req.Addresses, a.String())
	}
	leaves := join.NodeCerts(cfg.NodeName, nodeIPs(cfg))
	for _, l := range leaves {
		key, err := pki.EnsureKey(np.TLS(l.KeyFile))
		if err != nil {
			return nil, err
		}
		pub, err := pki.PublicKeyPEM(key.Public())
		if err != nil {
			return nil, err
		}
		req.Keys[join.CertName(l)] = string(pub)
	}

	var resp *join.Response
	var caPEM []byte
	if t == nil {
		local, err := os.ReadFile(np.TLS("ca.crt"))
		if err != nil {
			return nil, err
		}
		// The server CA as a server shows it, over TLS verified by the
		// node's: after a rotation, the new one with the old.
		if caPEM, err = joinclient.FetchCAVerified(ctx, cfg.Server, local); err != nil {
			return nil, err
		}
		cert, err := tls.LoadX509KeyPair(np.TLS("client-kubelet.crt"), np.TLS("client-kubelet.key"))
		if err != nil {
			return nil, err
		}
		if resp, err = joinclient.Renew(ctx, cfg.Server, local, cert, req); err != nil {
			return nil, err
		}
	} else {
		err = retryUnreachable(ctx, log, func() error {
			var pinned bool
			var err error
			if caPEM, pinned, err = joinclient.FetchCA(ctx, cfg.Server, *t); err != nil {
				return err
			}
			if !pinned {
				log.Warn("the token names no CA hash, so the server's CA was taken on trust; use the full token (K10...) to pin it")
			}
			resp, err = joinclient.Join(ctx, cfg.Server, caPEM, *t, req)
			return err
		})
		if err != nil || ctx.Err() != nil {
			return nil, err
		}
	}
	for _, l := range leaves {
		crt, ok := resp.Certificates[join.CertName(l)]
		if !ok {
			return nil, fmt.Errorf("the server sent no %s certificate", join.CertName(l))
		}
		if err := fileutil.WriteFile(np.TLS(l.CertFile), []byte(crt), 0o644); err != nil {
			return nil, err
		}
	}
	// A server of a kasa with one CA signs with its server CA and sends no
	// other. The server CA last: until it is written, the next check sees
	// a rotation and renews again.
	clientCA, kubeletCA := cmp.Or(resp.ClientCA, string(caPEM)), cmp.Or(resp.KubeletCA, string(caPEM))
	for _, f := range []struct{ file, pem string }{{"client-ca.crt", clientCA}, {"kubelet-ca.crt", kubeletCA}, {"ca.crt", string(caPEM)}} {
		if err := fileutil.WriteFile(np.TLS(f.file), []byte(f.pem), 0o644); err != nil {
			return nil, err
		}
	}
	state := State{NodeName: cfg.NodeName, Servers: resp.Servers, Cluster: resp.Cluster}
	if err := saveState(np.JoinState(), &state); err != nil {
		return nil, err
	}
	if t == nil {
		log.Info("renewed the node's certificates", "node", cfg.NodeName, "server", cfg.Server)
	} else {
		log.Info("joined the cluster", "node", cfg.NodeName, "server", cfg.Server, "servers", resp.Servers)
	}
	return &state, nil
}

// retryUnreachable runs f until it succeeds or fails for another reason
// than an unreachable server, waiting 1 s, then twice as long up to 30 s,
// between tries; it logs when the server cannot be reached and when it
// can again.
func retryUnreachable(ctx context.Context, log *slog.Logger, f func() error) error {
	failing := false
	for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
		err := f()
		if !errors.Is(err, joinclient.ErrUnreachable) {
			if failing && err == nil {
				log.Info("the server answers")
			}
			return err
		}
		if !failing {
			log.Warn("cannot reach the server; retrying with backoff", "err", err)
			failing = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// splitCAs reports whether the node has the client and kubelet CAs that
// signed its certificates; a node that joined a kasa with one CA has
// neither, and its certificates were signed by the server CA (ca.crt).
func splitCAs(np datadir.Agent) bool {
	for _, f := range []string{"client-ca.crt", "kubelet-ca.crt"} {
		if _, err := os.Stat(np.TLS(f)); err != nil {
			return false
		}
	}
	return true
}

// checkNodeCerts checks the node's certificates against the CAs that signed
// them and its name, and returns the first of them to expire.
func checkNodeCerts(np datadir.Agent, name string) (*x509.Certificate, error) {
	clientFile, kubeletFile := "client-ca.crt", "kubelet-ca.crt"
	if !splitCAs(np) {
		clientFile, kubeletFile = "ca.crt", "ca.crt"
	}
	clientPEM, err := os.ReadFile(np.TLS(clientFile))
	if err != nil {
		return nil, err
	}
	kubeletPEM, err := os.ReadFile(np.TLS(kubeletFile))
	if err != nil {
		return nil, err
	}
	var first *x509.Certificate
	for _, l := range join.NodeCerts(name, nil) {
		caPEM := clientPEM
		if l.Server {
			caPEM = kubeletPEM
		}
		cert, err := pki.CheckLeaf(np.TLS(l.CertFile), np.TLS(l.KeyFile), caPEM, l.CommonName)
		if err != nil {
			return nil, err
		}
		if first == nil || cert.NotAfter.Before(first.NotAfter) {
			first = cert
		}
	}
	return first, nil
}

// nodeIPs are the addresses the node reports (--node-ip, or the detected
// one), which its serving certificate names.
func nodeIPs(cfg *config.AgentNode) []net.IP {
	var ips []net.IP
	for _, a := range cfg.NodeIPs {
		ips = append(ips, net.IP(a.AsSlice()))
	}
	return ips
}

// servingMoved says how the kubelet's serving certificate of the node
// differs from the one a join for name and ips would sign (join.NodeCerts):
// "" when it names the same addresses and host names. A node whose address
// changed needs a new one, since the API servers verify its kubelet's
// certificate against the address they reach it at.
func servingMoved(np datadir.Agent, name string, ips []net.IP) (string, error) {
	for _, l := range join.NodeCerts(name, ips) {
		if !l.Server {
			continue
		}
		cert, err := pki.ReadCert(np.TLS(l.CertFile))
		if err != nil {
			return "", fmt.Errorf("%s: %w", np.TLS(l.CertFile), err)
		}
		return sansDiffer(cert, l), nil
	}
	return "", nil
}

// sansDiffer compares the addresses and host names of cert with those of
// the leaf l, ignoring order and repeats, and says how they differ: "" when
// they do not.
func sansDiffer(cert *x509.Certificate, l pki.Leaf) string {
	ipStrings := func(ips []net.IP) []string {
		var out []string
		for _, ip := range ips {
			out = append(out, ip.String())
		}
		return out
	}
	set := func(s []string) []string {
		s = slices.Clone(s)
		slices.Sort(s)
		return slices.Compact(s)
	}
	haveIPs, wantIPs := set(ipStrings(cert.IPAddresses)), set(ipStrings(l.IPs))
	if !slices.Equal(haveIPs, wantIPs) {
		return fmt.Sprintf("the serving certificate names the addresses %s, the node has %s", strings.Join(haveIPs, ", "), strings.Join(wantIPs, ", "))
	}
	haveDNS, wantDNS := set(cert.DNSNames), set(l.DNSNames)
	if !slices.Equal(haveDNS, wantDNS) {
		return fmt.Sprintf("the serving certificate names the hosts %s, the node is %s", strings.Join(haveDNS, ", "), strings.Join(wantDNS, ", "))
	}
	return ""
}

// nodePassword returns the node's password, making one on first use.
func nodePassword(file string) (string, error) {
	if b, err := os.ReadFile(file); err == nil {
		if p := string(b); len(p) >= 32 {
			return p, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("node password: %w", err)
	}
	p, err := token.NewSecret()
	if err != nil {
		return "", err
	}
	return p, fileutil.WriteFile(file, []byte(p), 0o600)
}

func saveState(file string, s *State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return fileutil.WriteFile(file, append(b, '\n'), 0o600)
}
