package server

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kasa-io/kasa/pkg/agent"
	"github.com/kasa-io/kasa/pkg/component"
	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/datadir"
	"github.com/kasa-io/kasa/pkg/datastore"
	"github.com/kasa-io/kasa/pkg/fileutil"
	"github.com/kasa-io/kasa/pkg/join/joinserver"
	"github.com/kasa-io/kasa/pkg/kubeconfig"
	"github.com/kasa-io/kasa/pkg/secretsencrypt"
	"github.com/kasa-io/kasa/pkg/token"
)

// start is a server's start: its steps (the lifecycle's init phase) run in
// order and fill it; components is what the Manager runs after them.
type start struct {
	cfg *config.Server
	o   Options
	log *slog.Logger
	now func() time.Time
	p   Paths

	locks                   []*fileutil.Lock
	kcmArgs, schedArgs      []string
	certs                   *certs
	serverToken, agentToken token.Token
	adminRC                 *rest.Config // from the admin kubeconfig
	adminMu                 sync.Mutex
	adminCert               []byte // the certificate and CA in the admin kubeconfig people use
	kine                    *datastore.Kine
	kv                      *datastore.KV // the bootstrap data's connection, until saved
	firstServer             bool
	serverCA                []byte                 // the CA of --server's cluster, on a first start
	encryption              *secretsencrypt.Config // nil: no encryption configuration
	encryptionShared        bool                   // the bootstrap data holds one
	node                    *agent.Start
	components              []component.Component
	joins                   *joinserver.Handler // the join endpoint, whose CAs a rotation replaces
	kcmRestart              chan struct{}       // has the controller-manager start again
}

// steps are the server's start-up steps, in order; without --disable-agent
// the node's follow the control plane's.
func (s *start) steps() []component.Step {
	steps := []component.Step{
		{Name: "lock data dir", Run: s.lock},
		{Name: "check secrets", Run: func(context.Context) error { return component.Setting(checkNewSecrets(s.p, s.cfg)) }},
		{Name: "check ports", Run: s.checkPorts},
	}
	if s.cfg.Server != "" {
		steps = append(steps, component.Step{Name: "cluster of --server", Run: s.clusterCA})
	}
	if s.cfg.RestorePath != "" {
		steps = append(steps, component.Step{Name: "restore snapshot", Run: s.restoreSnapshot})
	}
	steps = append(steps, component.Step{Name: "datastore", Run: s.openDatastore})
	if s.shared() {
		steps = append(steps, component.Step{Name: "bootstrap data", Run: s.loadBootstrap})
	}
	steps = append(steps,
		component.Step{Name: "certificates", Run: s.certificates},
		component.Step{Name: "tokens", Run: s.tokens},
		component.Step{Name: "secrets encryption", Run: s.secretsEncryption},
		component.Step{Name: "cluster settings", Run: s.writeClusterSettings},
	)
	if !s.cfg.Snapshots.Disabled && !s.shared() {
		steps = append(steps, component.Step{Name: "db snapshots", Run: func(context.Context) error {
			s.components = append(s.components, scheduledSnapshots(s.cfg, s.log, s.now))
			return nil
		}})
	}
	if s.shared() {
		steps = append(steps, component.Step{Name: "save bootstrap data", Run: func(ctx context.Context) error {
			defer s.closeKV()
			if !s.firstServer {
				return nil
			}
			return s.saveBootstrap(ctx)
		}})
	}
	steps = append(steps, []component.Step{
		{Name: "kubeconfigs", Run: s.kubeconfigs},
		{Name: "security files", Run: func(context.Context) error { return writeSecurityFiles(s.p) }},
		{Name: "control plane", Run: s.controlPlane},
		{Name: "add-ons", Run: s.addons},
	}...)
	if s.cfg.Agent == nil {
		return steps
	}
	s.node = agent.NewStart(agent.Node{
		DataDir:      s.cfg.DataDir,
		Name:         s.cfg.NodeName,
		IP:           nodeIP(s.cfg),
		Agent:        s.cfg.Agent,
		ServerURL:    s.serverURL(),
		CAFile:       s.p.TLS("ca.crt"),
		ClientCAFile: s.p.TLS("client-ca.crt"),
		Cluster:      clusterSettings(s.cfg),
		Env:          s.o.Env,
		Log:          s.log,
	})
	steps = append(steps, component.Step{Name: "node certificates", Run: func(context.Context) error {
		return ensureNodeCerts(s.cfg, datadir.New(s.cfg.DataDir).Agent(), s.certs, s.now(), s.log)
	}})
	steps = append(steps, s.node.Steps()...)
	return append(steps, component.Step{Name: "node parts", Run: s.nodeParts})
}

// closeKV ends the bootstrap data's connection to the datastore.
func (s *start) closeKV() {
	if s.kv != nil {
		_ = s.kv.Close()
		s.kv = nil
	}
}

// release stops the datastore if the components did not run, and lets go
// of the locks the start took.
func (s *start) release() {
	s.closeKV()
	if s.kine != nil {
		s.kine.Close()
	}
	for _, l := range slices.Backward(s.locks) {
		l.Release()
	}
}

// lock takes the data dir's lock and, with a node, the machine's.
func (s *start) lock(context.Context) error {
	lock, err := lockDataDir(s.cfg.DataDir, s.p.Lock())
	if err != nil {
		return err
	}
	s.locks = append(s.locks, lock)
	if s.cfg.Agent != nil {
		nodeLock, err := agent.LockNode(", or run this server with --disable-agent")
		if err != nil {
			return err
		}
		s.locks = append(s.locks, nodeLock)
	}
	return nil
}

func (s *start) checkPorts(context.Context) error {
	s.kcmArgs, s.schedArgs = controllerManagerArgs(s.cfg, s.p), schedulerArgs(s.cfg, s.p)
	return checkPorts(s.cfg, s.kcmArgs, s.schedArgs)
}

func (s *start) certificates(context.Context) (err error) {
	s.certs, err = ensureCerts(s.cfg, s.p, s.now(), s.log)
	return err
}

// tokens keeps the server and agent tokens, warning about ignored or weak
// ones.
func (s *start) tokens(context.Context) error {
	var serverIgnored, agentIgnored bool
	var err error
	s.serverToken, serverIgnored, err = ensureToken(s.p.Token(), s.cfg.Token, s.certs.Server)
	if err != nil {
		return err
	}
	s.agentToken, agentIgnored, err = ensureAgentToken(s.p.AgentToken(), s.cfg.AgentToken, s.certs.Server)
	if err != nil {
		return err
	}
	warnIgnoredTokens(s.log, s.p, serverIgnored, agentIgnored, s.cfg.Token, s.serverToken, s.agentToken)
	warnWeakSecrets(s.log, s.serverToken, s.agentToken)
	return nil
}

// serverURL is where this machine's clients reach the API server.
func (s *start) serverURL() string { return "https://" + localAddr(s.cfg).String() }

// kubeconfigs writes the control plane's own kubeconfigs.
func (s *start) kubeconfigs(context.Context) error {
	for _, kc := range []struct{ file, client string }{
		{"controller.kubeconfig", "controller"},
		{"scheduler.kubeconfig", "scheduler"},
		{"admin.kubeconfig", "admin"},
	} {
		if err := kubeconfig.Write(s.p.Cred(kc.file), 0o600, kubeconfig.Spec{
			Server: s.serverURL(), CAFile: s.p.TLS("ca.crt"),
			CertFile: s.p.TLS("client-" + kc.client + ".crt"), KeyFile: s.p.TLS("client-" + kc.client + ".key"),
		}); err != nil {
			return err
		}
	}
	var err error
	s.adminRC, err = clientcmd.BuildConfigFromFlags("", s.p.Cred("admin.kubeconfig"))
	return err
}

// controlPlane makes the control plane's components: kine, the API server
// with the join endpoint, the token keeper, the controller-manager, the
// scheduler and the admin kubeconfig writer.
func (s *start) controlPlane(context.Context) error {
	cfg, p, log := s.cfg, s.p, s.log
	client, err := adminHTTPClient(p.TLS("ca.crt"), p.TLS("client-admin.crt"), p.TLS("client-admin.key"))
	if err != nil {
		return err
	}
	joins, store, err := s.joinEndpoint()
	if err != nil {
		return err
	}
	s.joins, s.kcmRestart = joins, make(chan struct{}, 1)
	kine := s.kine
	s.components = append(s.components,
		kine,
		&APIServer{
			Args:      func() []string { return apiserverArgs(cfg, p, kine.Endpoints(), s.encryption != nil) },
			ReadyzURL: s.serverURL() + "/readyz",
			Client:    client,
			Wrap:      joins.Wrap,
		},
		joinTokens(store, s.serverToken, s.agentToken, p, log),
		&ControllerManager{Args: s.kcmArgs, Log: log.With("component", "kube-controller-manager"), Restart: s.kcmRestart},
		&Scheduler{Args: s.schedArgs, Log: log.With("component", "kube-scheduler")},
		s.adminKubeconfig(),
		s.certRenewal(),
	)
	if !s.shared() {
		s.components = append(s.components, s.dbHealth())
	} else {
		s.components = append(s.components, s.bootstrapResealer())
	}
	return nil
}

// joinEndpoint makes the join endpoint's handler and its store.
func (s *start) joinEndpoint() (*joinserver.Handler, *joinserver.Store, error) {
	rc := rest.CopyConfig(s.adminRC)
	// The join endpoint reads a Secret or two per check: with client-go's
	// default 5 requests a second, a real join would wait behind the reads
	// of failed ones.
	rc.QPS, rc.Burst = 200, 400
	joinClient, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, err
	}
	store := &joinserver.Store{Client: joinClient, Now: s.now}
	return &joinserver.Handler{
		ServerCA:  s.certs.Server,
		ClientCA:  s.certs.Client,
		KubeletCA: s.certs.Kubelet,
		Reserved:  reservedNodeNames(s.cfg),
		Store:     store,
		Cluster:   clusterSettings(s.cfg),
		Log:       s.log.With("component", "join"),
		Now:       s.now,
	}, store, nil
}

// adminKubeconfig writes the admin kubeconfig for people once the control
// plane serves.
func (s *start) adminKubeconfig() component.Component {
	return component.Func{ComponentName: "kubeconfig", RunFunc: func(ctx context.Context, ready func()) error {
		if err := s.writeAdminKubeconfig(); err != nil {
			return err
		}
		ready()
		<-ctx.Done()
		return nil
	}}
}

// writeAdminKubeconfig writes the admin kubeconfig (--write-kubeconfig),
// with the admin certificate in it, unless it holds the current one.
func (s *start) writeAdminKubeconfig() error {
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	cfg, p := s.cfg, s.p
	cert, err := os.ReadFile(p.TLS("client-admin.crt"))
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(p.TLS("ca.crt"))
	if err != nil {
		return err
	}
	// The CA too: the end of a CA rotation changes it alone.
	cert = append(cert, ca...)
	if bytes.Equal(cert, s.adminCert) {
		return nil
	}
	if err := kubeconfig.Write(cfg.WriteKubeconfig, cfg.WriteKubeconfigMode, kubeconfig.Spec{
		Server: s.serverURL(), CAFile: p.TLS("ca.crt"), Embed: true,
		CertFile: p.TLS("client-admin.crt"), KeyFile: p.TLS("client-admin.key"),
	}); err != nil {
		return fmt.Errorf("%w (pick another path with --write-kubeconfig)", err)
	}
	s.adminCert = cert
	s.log.Info("wrote admin kubeconfig", "file", cfg.WriteKubeconfig)
	return nil
}

// addons writes the add-ons' manifests and makes the controllers that
// deploy them.
func (s *start) addons(context.Context) error {
	controllers, err := serverControllers(s.cfg, s.p, s.certs, s.log)
	if err != nil {
		return err
	}
	s.components = append(s.components, controllers...)
	return nil
}

// nodeParts adds the node's parts and the control-plane label of its Node.
func (s *start) nodeParts(context.Context) error {
	adminClient, err := kubernetes.NewForConfig(s.adminRC)
	if err != nil {
		return err
	}
	s.components = append(s.components, s.node.Components()...)
	s.components = append(s.components, nodeRole(adminClient, s.cfg.NodeName))
	return nil
}
