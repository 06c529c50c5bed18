package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kasa-io/kasa/pkg/bootstrap"
	"github.com/kasa-io/kasa/pkg/component"
	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/datadir"
	"github.com/kasa-io/kasa/pkg/fileutil"
	"github.com/kasa-io/kasa/pkg/snapshot"
	"github.com/kasa-io/kasa/pkg/token"
	"github.com/kasa-io/kasa/pkg/version"
)

// SnapshotRequest is a snapshot to take of a server's datastore.
type SnapshotRequest struct {
	Name, Node string
	// Dir is the folder of snapshots; empty for the data dir's.
	Dir      string
	Compress bool
	Now      time.Time
}

// TakeSnapshot snapshots the SQLite datastore of the server of dataDir,
// running or not, with the files a restore needs (the CAs and keys, the
// tokens, the encryption configuration) sealed with its server token, and
// the cluster-wide settings of its last start.
func TakeSnapshot(ctx context.Context, dataDir string, r SnapshotRequest) (string, snapshot.Meta, error) {
	p := NewPaths(dataDir)
	if _, err := os.Stat(p.SQLite()); err != nil {
		if _, serr := os.Stat(p.Root); serr != nil {
			return "", snapshot.Meta{}, fmt.Errorf("no server has run with the data dir %s: give the server's --data-dir", dataDir)
		}
		return "", snapshot.Meta{}, fmt.Errorf("%s does not exist: this server's datastore is external (--datastore-endpoint); back that database up with its own tools (mysqldump, pg_dump)", p.SQLite())
	}
	b, err := os.ReadFile(p.Token())
	if err != nil {
		return "", snapshot.Meta{}, fmt.Errorf("the server token seals the snapshot's keys: %w", err)
	}
	t, err := token.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return "", snapshot.Meta{}, fmt.Errorf("%s: %w", p.Token(), err)
	}
	files, err := restoreFiles(p)
	if err != nil {
		return "", snapshot.Meta{}, err
	}
	var settings map[string]string
	if b, err := os.ReadFile(p.ClusterSettings()); err == nil {
		if err := json.Unmarshal(b, &settings); err != nil {
			return "", snapshot.Meta{}, fmt.Errorf("%s: %w", p.ClusterSettings(), err)
		}
	}
	dir := r.Dir
	if dir == "" {
		dir = p.Snapshots()
	}
	return snapshot.Save(ctx, snapshot.Options{
		DB: p.SQLite(), Dir: dir, Name: r.Name, Node: r.Node, Files: files, Settings: settings,
		Secret: t.Secret, Compress: r.Compress, Kasa: version.Version, Now: r.Now,
	})
}

// restoreFiles are the server folder's files a restore puts back: those
// every server of a cluster shares, and the kept ones it has (the tokens,
// the encryption configuration, the CAs' cross-certificates).
func restoreFiles(p Paths) (map[string][]byte, error) {
	files, err := bootstrap.ReadFiles(p.Root, sharedFiles)
	if err != nil {
		return nil, err
	}
	kept := slices.Clone(keptFiles)
	for _, ca := range caNames {
		kept = append(kept, "tls/"+ca+"-cross.crt")
	}
	for _, name := range kept {
		if b, err := os.ReadFile(filepath.Join(p.Root, name)); err == nil {
			files[name] = b
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	return files, nil
}

// writeClusterSettings keeps this start's cluster-wide settings for the
// snapshots (which a restore checks its own against).
func (s *start) writeClusterSettings(context.Context) error {
	b, err := json.MarshalIndent(sharedSettings(s.cfg), "", "  ")
	if err != nil {
		return err
	}
	return fileutil.WriteFile(s.p.ClusterSettings(), b, 0o600)
}

// restored is what Restored records of a restore.
type restored struct {
	File     string    `json:"file"`
	Created  time.Time `json:"created"`
	SHA256   string    `json:"sha256"`
	Restored time.Time `json:"restored"`
}

// restoreSnapshot replaces, before the datastore opens, this server's
// SQLite database, certificates, keys and tokens with those of the snapshot
// --cluster-reset-restore-path names; the start then goes on as usual. The
// replaced files are moved into <data-dir>/server/before-restore-<time>.
// The restored database continues at a revision past any a client saw
// before, with every earlier one compacted: watchers list again. A start
// with the same flags after the restore restores nothing again.
func (s *start) restoreSnapshot(ctx context.Context) error {
	path, p := s.cfg.RestorePath, s.p
	m, err := snapshot.ReadMeta(path)
	if err != nil {
		return component.Setting(fmt.Errorf("--cluster-reset-restore-path: %w", err))
	}
	if b, err := os.ReadFile(p.Restored()); err == nil {
		var r restored
		if json.Unmarshal(b, &r) == nil && r.SHA256 == m.DBSum() && r.Created.Equal(m.Created) {
			s.log.Warn("--cluster-reset: this snapshot was restored already; nothing restored again (drop --cluster-reset and --cluster-reset-restore-path)", "file", path, "restored", r.Restored)
			return nil
		}
	}
	secret, err := s.bootstrapSecret()
	if err != nil {
		return err
	}
	if secret == "" {
		return component.Setting(errors.New("--cluster-reset: give the server token of the cluster the snapshot was taken on (--token or KASA_TOKEN): it opens the snapshot's keys"))
	}
	if err := os.MkdirAll(p.DB(), 0o700); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(p.DB(), ".restore-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	x, err := snapshot.Extract(path, secret, tmp)
	if err != nil {
		return component.Setting(fmt.Errorf("--cluster-reset-restore-path: %w", err))
	}
	if len(x.Data.Settings) > 0 {
		if err := x.Data.CheckSettings(sharedSettings(s.cfg)); err != nil {
			return component.Setting(fmt.Errorf("--cluster-reset: the snapshot's cluster: %w", err))
		}
	}
	rev := x.Meta.Revision
	if _, err := os.Stat(p.SQLite()); err == nil {
		if old, err := snapshot.Revision(ctx, p.SQLite()); err == nil {
			rev = max(rev, old)
		} else {
			s.log.Warn("--cluster-reset: the database being replaced cannot be read", "err", err)
		}
	}
	if err := snapshot.Bump(ctx, x.DB, rev+snapshot.RevisionBump); err != nil {
		return fmt.Errorf("--cluster-reset: %w", err)
	}
	now := s.now()
	backup := filepath.Join(p.Root, "before-restore-"+strconv.FormatInt(now.Unix(), 10))
	if err := os.MkdirAll(backup, 0o700); err != nil {
		return err
	}
	moved := []string{"db/state.db", "db/state.db-wal", "db/state.db-shm", "tls", "cred", "token", "agent-token"}
	for _, name := range moved {
		from := filepath.Join(p.Root, name)
		if _, err := os.Lstat(from); errors.Is(err, os.ErrNotExist) {
			continue
		}
		to := filepath.Join(backup, name)
		if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
			return err
		}
		if err := os.Rename(from, to); err != nil {
			return err
		}
	}
	if err := os.Rename(x.DB, p.SQLite()); err != nil {
		return err
	}
	for name, b := range x.Data.Files {
		if err := fileutil.WriteFile(filepath.Join(p.Root, name), b, 0o600); err != nil {
			return err
		}
	}
	rec, _ := json.Marshal(restored{File: path, Created: m.Created, SHA256: m.DBSum(), Restored: now})
	if err := fileutil.WriteFile(p.Restored(), rec, 0o600); err != nil {
		return err
	}
	s.log.Warn("--cluster-reset: restored the datastore, certificates and tokens from the snapshot; what they replaced is kept",
		"file", path, "taken", m.Created, "on", m.Node, "revision", rev+snapshot.RevisionBump, "replaced", backup,
		"files", strings.Join(slices.Sorted(maps.Keys(x.Data.Files)), ","))
	return nil
}

// scheduledSnapshots takes a snapshot named "db-snapshot" on the cron
// schedule and keeps the newest Retention of them. A failed snapshot is
// logged and the next one comes on time.
func scheduledSnapshots(cfg *config.Server, log *slog.Logger, now func() time.Time) component.Component {
	log = log.With("component", "db-snapshots")
	return component.Func{ComponentName: "db-snapshots", RunFunc: func(ctx context.Context, ready func()) error {
		sched, err := snapshot.ParseSchedule(cfg.Snapshots.Cron)
		if err != nil {
			return err
		}
		ready()
		dir := cfg.Snapshots.Dir
		if dir == "" {
			dir = datadir.New(cfg.DataDir).Server().Snapshots()
		}
		for {
			next := sched.Next(now())
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Until(next)):
			}
			path, m, err := TakeSnapshot(ctx, cfg.DataDir, SnapshotRequest{Name: "db-snapshot", Node: cfg.NodeName, Dir: dir, Compress: cfg.Snapshots.Compress, Now: now()})
			if err != nil {
				log.Error("scheduled snapshot failed; the next one is on schedule", "err", err)
				continue
			}
			log.Info("scheduled snapshot", "file", path, "revision", m.Revision)
			deleted, err := snapshot.Prune(dir, "db-snapshot", cfg.Snapshots.Retention)
			if err != nil {
				log.Error("pruning scheduled snapshots failed", "err", err)
			}
			for _, d := range deleted {
				log.Info("deleted an old scheduled snapshot (--db-snapshot-retention)", "file", d)
			}
		}
	}}
}
