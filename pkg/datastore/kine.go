// Package datastore runs kine, the etcd API over SQL that holds the cluster's
// state: SQLite in the data dir by default, MySQL or PostgreSQL by DSN.
package datastore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/k3s-io/kine/pkg/drivers"
	kinetls "github.com/k3s-io/kine/pkg/tls"

	"github.com/kasa-io/kasa/pkg/component"
	"github.com/kasa-io/kasa/pkg/config"
)

// SQLiteParams are the connection parameters of the default SQLite file:
// write-ahead log, so that a killed process loses no committed write.
const SQLiteParams = "_journal_mode=WAL&_busy_timeout=30000&_synchronous=NORMAL&_txlock=immediate&_stmt_cache_size=20&cache=shared"

// Kine is the datastore component.
type Kine struct {
	// DBDir holds state.db when no endpoint is configured, and the socket.
	DBDir     string
	Datastore config.Datastore
	// Log tells of the one-time vacuum at start; nil logs nothing.
	Log *slog.Logger

	mu        sync.Mutex
	endpoints []string
	stop      context.CancelFunc
	stopped   chan struct{}
}

var _ component.Component = (*Kine)(nil)

// Name implements component.Component.
func (k *Kine) Name() string { return "kine" }

// SocketPath is where kine serves the etcd API.
func (k *Kine) SocketPath() string { return SocketPath(k.DBDir) }

// SocketPath is where the kine of the db folder dbDir serves: a command on
// a server reads the datastore through it.
func SocketPath(dbDir string) string { return filepath.Join(dbDir, "kine.sock") }

// Endpoints returns the etcd endpoints kine serves; valid once it is ready.
func (k *Kine) Endpoints() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.endpoints
}

// Scheme names the kind of datastore, for logs: sqlite, mysql, postgres...
func (k *Kine) Scheme() string {
	ep := k.Datastore.Endpoint.Reveal()
	if ep == "" {
		return "sqlite"
	}
	scheme, _, ok := strings.Cut(ep, "://")
	if !ok {
		return "unknown"
	}
	return scheme
}

// Run implements component.Component: kine serves (Open) until ctx ends.
func (k *Kine) Run(ctx context.Context, ready func()) error {
	if err := k.Open(ctx); err != nil {
		return err
	}
	ready()
	<-ctx.Done()
	k.Close()
	return nil
}

// Open starts kine unless it runs, and returns once it serves: a start-up
// step may use the datastore before the components run (the bootstrap
// data). It serves until Close, whatever becomes of ctx.
func (k *Kine) Open(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stop != nil {
		return nil
	}
	if err := os.MkdirAll(k.DBDir, 0o700); err != nil {
		return err
	}
	ep := k.Datastore.Endpoint.Reveal()
	if ep == "" {
		file := filepath.Join(k.DBDir, "state.db")
		if err := CheckSQLite(ctx, file); err != nil {
			return err
		}
		started := time.Now()
		vacuumed, err := MakeIncremental(ctx, file)
		if err != nil {
			return fmt.Errorf("datastore %s: %w", file, err)
		}
		if vacuumed && k.Log != nil {
			k.Log.Info("the datastore was vacuumed once, so that its free pages can go back to the disk while it runs", "file", file, "took", time.Since(started).Round(time.Millisecond))
		}
		ep = "sqlite://" + file + "?" + SQLiteParams
	}
	if sock := k.SocketPath(); len(sock) > 100 {
		return fmt.Errorf("socket path %s is too long for a unix socket: use a shorter --data-dir", sock)
	}
	kctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	// kine's own defaults. Compaction is driven by the API server (every
	// five minutes), which keeps SQLite from growing without bound.
	endpoints, err := listen(kctx, k.SocketPath(), drivers.Config{
		Endpoint: ep,
		BackendTLSConfig: kinetls.Config{
			CAFile:   k.Datastore.CAFile,
			CertFile: k.Datastore.CertFile,
			KeyFile:  k.Datastore.KeyFile,
		},
		CompactTimeout:   5 * time.Second,
		CompactMinRetain: 1000,
		CompactBatchSize: 1000,
		PollBatchSize:    500,
		PollInterval:     time.Second,
	}, 5*time.Second, "3.6.11", &wg)
	if err != nil {
		cancel()
		return fmt.Errorf("open %s datastore: %w%s", k.Scheme(), Redact(err, k.Datastore.Endpoint), remedy(err))
	}
	k.endpoints = endpoints
	k.stop, k.stopped = cancel, make(chan struct{})
	go func(done chan struct{}) { wg.Wait(); close(done) }(k.stopped)
	return nil
}

// Close stops kine, if it runs, and waits (a little) for its end.
func (k *Kine) Close() {
	k.mu.Lock()
	stop, stopped := k.stop, k.stopped
	k.stop, k.stopped = nil, nil
	k.mu.Unlock()
	if stop == nil {
		return
	}
	stop()
	select {
	case <-stopped:
	case <-time.After(gracefulStop + time.Second):
	}
}

// remedy says what to do about a datastore that refused kasa or could not
// be reached, from the database's own error (MySQL and MariaDB codes,
// PostgreSQL's SQLSTATE, the network's errors).
func remedy(err error) string {
	msg := err.Error()
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(msg, s) {
				return true
			}
		}
		return false
	}
	switch {
	case has("Error 1045", "28P01", "password authentication failed"):
		return "; the datastore refused the user or password of --datastore-endpoint: check them"
	case has("Error 1044", "Error 1142", "Error 1227", "42501", "permission denied"):
		return "; the user of --datastore-endpoint lacks privileges: grant it every privilege on its database (and CREATE, for kasa to make the database)"
	case has("connection refused", "no such host", "i/o timeout", "network is unreachable", "no route to host"):
		return "; the datastore cannot be reached at the address of --datastore-endpoint: is it running, and reachable from this machine?"
	case has("certificate", "tls:", "x509"):
		return "; TLS to the datastore failed: check --datastore-cafile, --datastore-certfile and --datastore-keyfile"
	}
	return ""
}

// Redact replaces the DSN and its password, wherever they appear in err, by
// placeholders, so that a failed connection never prints a credential.
func Redact(err error, dsn config.Secret) error {
	if err == nil || dsn == "" {
		return err
	}
	msg := err.Error()
	secrets := []string{dsn.Reveal()}
	if u, perr := url.Parse(dsn.Reveal()); perr == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			secrets = append(secrets, p, url.QueryEscape(p))
		}
	}
	// kine's MySQL form user:pass@tcp(host)/db is not a URL; take what lies
	// between the first ':' after the scheme and the last '@'.
	if _, rest, ok := strings.Cut(dsn.Reveal(), "://"); ok {
		if at := strings.LastIndex(rest, "@"); at > 0 {
			if _, pass, ok := strings.Cut(rest[:at], ":"); ok && pass != "" {
				secrets = append(secrets, pass)
			}
		}
	}
	changed := false
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			msg = strings.ReplaceAll(msg, s, "<redacted>")
			changed = true
		}
	}
	if !changed {
		return err
	}
	return errors.New(msg)
}
