package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kasa-io/kasa/pkg/bootstrap"
	"github.com/kasa-io/kasa/pkg/component"
	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/datastore"
	"github.com/kasa-io/kasa/pkg/fileutil"
	"github.com/kasa-io/kasa/pkg/join/joinclient"
	"github.com/kasa-io/kasa/pkg/token"
)

// sharedFiles are the server folder's files that every server of a cluster
// has the same of: the CAs with their keys and the service-account key.
var sharedFiles = []string{
	"tls/ca.crt", "tls/ca.key",
	"tls/client-ca.crt", "tls/client-ca.key",
	"tls/kubelet-ca.crt", "tls/kubelet-ca.key",
	"tls/request-header-ca.crt", "tls/request-header-ca.key",
	"tls/service-account.key",
}

// keptFiles are given to a server that joins the cluster when it has none
// of its own; one that has them keeps them (they may be rotated): the
// tokens and the encryption configuration, when there are.
var keptFiles = []string{"token", "agent-token", encryptionFile}

// sharedSettings are the settings every server of a cluster must share,
// by flag name.
func sharedSettings(cfg *config.Server) map[string]string {
	disabled := cfg.Disable.List()
	names := make([]string, len(disabled))
	for i, a := range disabled {
		names[i] = string(a)
	}
	return map[string]string{
		"cluster-cidr":           cfg.ClusterCIDR.String(),
		"service-cidr":           cfg.ServiceCIDR.String(),
		"cluster-dns":            cfg.ClusterDNS.String(),
		"cluster-domain":         cfg.ClusterDomain,
		"flannel-backend":        cfg.FlannelBackend,
		"disable":                strings.Join(names, ","),
		"disable-network-policy": strconv.FormatBool(cfg.DisableNetworkPolicy),
		// Every server writes Secrets as the others read them.
		"secrets-encryption":          strconv.FormatBool(cfg.SecretsEncryption),
		"secrets-encryption-provider": cfg.SecretsProvider,
	}
}

// shared reports whether this server's datastore can be another server's
// too: an external one (--datastore-endpoint). SQLite in the data dir is
// this server's alone, and keeps no bootstrap data.
func (s *start) shared() bool { return s.cfg.Datastore.Endpoint != "" }

// clusterCA fetches, on the first start of a server given --server, the CA
// of that cluster, checked against the token's hash when the token names
// one: the datastore's bootstrap data must hold the same (loadBootstrap).
// A server that has joined starts without asking, so that it starts while
// the server it joined through is down.
func (s *start) clusterCA(ctx context.Context) error {
	if _, err := os.Stat(s.p.TLS("ca.crt")); err == nil {
		return nil
	}
	t, err := token.Parse(s.cfg.Token.Reveal())
	if err != nil {
		return component.Setting(fmt.Errorf("--token: %w", err))
	}
	ca, pinned, err := joinclient.FetchCA(ctx, s.cfg.Server, t)
	if err != nil {
		return component.Setting(fmt.Errorf("--server: %w", err))
	}
	if !pinned {
		s.log.Warn("--token is the bare secret, without the CA hash of a K10 token: the CA of --server was taken as found", "server", s.cfg.Server)
	}
	s.serverCA = ca
	return nil
}

// openDatastore starts kine, so that the bootstrap data can be read before
// any certificate is made; the kine component then serves on.
func (s *start) openDatastore(ctx context.Context) error {
	s.kine = &datastore.Kine{DBDir: s.p.DB(), Datastore: s.cfg.Datastore, Log: s.log}
	s.log.Info("datastore", "kind", s.kine.Scheme())
	return s.kine.Open(ctx)
}

// bootstrapSecret is the secret that seals the cluster's bootstrap data:
// the kept server token's, else the one given (a server joining the
// cluster), else none (the first server, which makes one later).
func (s *start) bootstrapSecret() (string, error) {
	if b, err := os.ReadFile(s.p.Token()); err == nil {
		t, err := token.Parse(strings.TrimSpace(string(b)))
		if err != nil {
			return "", fmt.Errorf("%s: %w", s.p.Token(), err)
		}
		return t.Secret, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if s.cfg.Token == "" {
		return "", nil
	}
	t, err := token.Parse(s.cfg.Token.Reveal())
	if err != nil {
		return "", component.Setting(fmt.Errorf("--token: %w", err))
	}
	return t.Secret, nil
}

// loadBootstrap takes the cluster's bootstrap data from the datastore, when
// a server saved it already: its CAs and keys go into the data dir (where
// a file of another cluster is refused, never replaced), its token files
// where this server has none, and this server's settings must be the
// cluster's. Without data, this is the cluster's first server.
func (s *start) loadBootstrap(ctx context.Context) error {
	kv, err := datastore.NewKV(s.kine.Endpoints())
	if err != nil {
		return err
	}
	s.kv = kv // for saveBootstrap, which closes it
	d, err := bootstrap.Load(ctx, kv, func() (string, error) {
		secret, err := s.bootstrapSecret()
		if err == nil && secret == "" {
			err = component.Setting(errors.New("--token: the datastore holds a cluster already; give this server that cluster's server token (the token file of its first server, <data-dir>/server/token) with --token or KASA_TOKEN"))
		}
		return secret, err
	})
	if errors.Is(err, bootstrap.ErrWrongToken) {
		d, err = s.rotatedBootstrap(ctx, kv)
	}
	switch {
	case errors.Is(err, bootstrap.ErrWrongToken):
		return component.Setting(errors.New("--token: the datastore holds a cluster whose server token is another: give this server that cluster's server token (the token file of its first server, <data-dir>/server/token); nothing was changed"))
	case err != nil:
		return err
	case d == nil && s.serverCA != nil:
		return component.Setting(fmt.Errorf("--server: %s serves a cluster, but the datastore of --datastore-endpoint holds none: give this server the --datastore-endpoint of the servers at %s (nothing was made)", s.cfg.Server, s.cfg.Server))
	case d == nil:
		s.firstServer = true
		s.log.Info("the datastore holds no cluster yet: this server makes it")
		return nil
	}
	if s.serverCA != nil && token.CAHash(d.Files["tls/ca.crt"]) != token.CAHash(s.serverCA) {
		return component.Setting(fmt.Errorf("--server: the datastore of --datastore-endpoint holds another cluster than the one %s serves (their CAs differ): give this server the --datastore-endpoint of the servers at %s (nothing was changed)", s.cfg.Server, s.cfg.Server))
	}
	if err := d.CheckSettings(sharedSettings(s.cfg)); err != nil {
		return component.Setting(err)
	}
	// The shared files must be the cluster's; the kept ones (tokens, the
	// encryption configuration) are this server's when it has them.
	shared := bootstrap.Data{Files: map[string][]byte{}}
	for name, b := range d.Files {
		if !slices.Contains(keptFiles, name) {
			shared.Files[name] = b
		}
	}
	// A CA that a rotation replaced while this server was down is taken.
	if err := shared.Install(s.p.Root, replaceRotated(s.p.Root, d.Files)); err != nil {
		return err
	}
	_, s.encryptionShared = d.Files[encryptionFile]
	for _, name := range keptFiles {
		b, ok := d.Files[name]
		path := filepath.Join(s.p.Root, name)
		if _, err := os.Stat(path); !ok || err == nil {
			continue
		}
		if err := fileutil.WriteFile(path, b, 0o600); err != nil {
			return err
		}
	}
	// The token files name the cluster's CA as it is now.
	if err := rehashTokens(s.p.Server); err != nil {
		return err
	}
	s.log.Info("joined the cluster of the datastore: its CAs and settings are this server's")
	return nil
}

// rotatedBootstrap opens the bootstrap data of a cluster whose server
// token was rotated on another server while this one was down: the copy
// sealed with the secret this server has (bootstrap.PreviousKey) holds the
// new token, which this server takes. ErrWrongToken when that fails too.
func (s *start) rotatedBootstrap(ctx context.Context, kv *datastore.KV) (*bootstrap.Data, error) {
	secret, err := s.bootstrapSecret()
	if err != nil {
		return nil, err
	}
	blob, ok, err := kv.Get(ctx, bootstrap.PreviousKey)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, bootstrap.ErrWrongToken
	}
	prev, err := bootstrap.Open(secret, blob)
	if err != nil {
		return nil, err
	}
	t, err := token.Parse(strings.TrimSpace(string(prev.Files["token"])))
	if err != nil {
		return nil, fmt.Errorf("the new server token in the bootstrap data: %w", err)
	}
	d, err := bootstrap.Load(ctx, kv, func() (string, error) { return t.Secret, nil })
	if err != nil || d == nil {
		return nil, errors.Join(bootstrap.ErrWrongToken, err)
	}
	if err := fileutil.WriteFile(s.p.Token(), prev.Files["token"], 0o600); err != nil {
		return nil, err
	}
	s.log.Info("the server token was rotated on another server while this one was down: this server took the new one", "file", s.p.Token())
	return d, nil
}

// bootstrapResealer seals the bootstrap data again when kasa token rotate
// on this server gave the server token a new secret, so that the servers
// start with it; the copy under the old secret tells the others the new
// token (rotatedBootstrap).
func (s *start) bootstrapResealer() component.Component {
	return component.Func{ComponentName: "bootstrap-token", RunFunc: func(ctx context.Context, ready func()) error {
		ready()
		sealedWith := s.serverToken.Secret
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(10 * time.Second):
			}
			b, err := os.ReadFile(s.p.Token())
			if err != nil {
				continue
			}
			t, err := token.Parse(strings.TrimSpace(string(b)))
			if err != nil || token.Equal(t.Secret, sealedWith) {
				continue
			}
			kv, err := datastore.NewKV(s.kine.Endpoints())
			if err != nil {
				s.log.Error("sealing the bootstrap data with the new server token failed; trying again", "err", err)
				continue
			}
			err = bootstrap.Reseal(ctx, kv, sealedWith, t.Secret, b)
			_ = kv.Close()
			if err != nil {
				s.log.Error("sealing the bootstrap data with the new server token failed; trying again", "err", err)
				continue
			}
			sealedWith = t.Secret
			s.log.Info("the server token was rotated: the bootstrap data is sealed with the new one")
		}
	}}
}

// saveBootstrap keeps, on the cluster's first server, the bootstrap data in
// the datastore, sealed with the server token.
func (s *start) saveBootstrap(ctx context.Context) error {
	files, err := bootstrap.ReadFiles(s.p.Root, sharedFiles)
	if err != nil {
		return err
	}
	// The agent token exists only when one was given, the encryption
	// configuration only with encryption.
	for _, name := range keptFiles {
		if b, err := os.ReadFile(filepath.Join(s.p.Root, name)); err == nil {
			files[name] = b
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	d := bootstrap.Data{Files: files, Settings: sharedSettings(s.cfg)}
	if err := bootstrap.Save(ctx, s.kv, s.serverToken.Secret, d); err != nil {
		return err
	}
	s.log.Info("saved the cluster's bootstrap data in the datastore, sealed with the server token")
	return nil
}
