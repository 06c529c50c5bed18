// Package snapshot keeps snapshots of a server's SQLite datastore: a
// consistent copy taken while the server runs, together with what a
// restore needs (the CAs and keys, the token files, the encryption
// configuration and the cluster-wide settings, sealed with the server
// token), in one file whose parts carry their sha256.
//
// A snapshot file is a tar archive, gzip-compressed or not:
//
//	meta.json         Meta: when, where, what revision, the parts' checksums
//	bootstrap.sealed  pkg/bootstrap's sealed Data: the server folder's files
//	state.db          kine's SQLite database, as VACUUM INTO wrote it
package snapshot

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // the driver kine's SQLite uses
	"github.com/robfig/cron/v3"

	"github.com/kasa-io/kasa/pkg/bootstrap"
	"github.com/kasa-io/kasa/pkg/fileutil"
)

// The parts of a snapshot file.
const (
	metaPart      = "meta.json"
	bootstrapPart = "bootstrap.sealed"
	dbPart        = "state.db"
)

// Meta describes a snapshot.
type Meta struct {
	Version  int       `json:"version"`
	Name     string    `json:"name"`
	Node     string    `json:"node"`
	Created  time.Time `json:"created"`
	Kasa     string    `json:"kasa"`
	Revision int64     `json:"revision"` // the datastore's, at the copy
	// SHA256 of each part but meta.json, by part name.
	SHA256 map[string]string `json:"sha256"`
}

// DBSum is the sha256 of the snapshot's database.
func (m Meta) DBSum() string { return m.SHA256[dbPart] }

// Options are what Save needs.
type Options struct {
	// DB is the server's state.db.
	DB string
	// Dir is the folder of snapshots; Name and Node name the file.
	Dir, Name, Node string
	// Files are the server folder's files a restore needs, sealed with
	// Secret, and Settings the cluster-wide settings.
	Files    map[string][]byte
	Settings map[string]string
	Secret   string
	Compress bool
	Kasa     string
	Now      time.Time
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$`)

// Save takes a snapshot into a new file of o.Dir, <name>-<node>-<unix
// time>[.gz], and returns its path and Meta. The database is copied with
// VACUUM INTO: one read transaction, which writers in WAL mode do not
// wait for.
func Save(ctx context.Context, o Options) (string, Meta, error) {
	if !nameRE.MatchString(o.Name) {
		return "", Meta{}, fmt.Errorf("invalid snapshot name %q: use lower-case letters, digits, '-' and '.'", o.Name)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return "", Meta{}, err
	}
	tmp, err := os.MkdirTemp(o.Dir, ".saving-")
	if err != nil {
		return "", Meta{}, err
	}
	defer os.RemoveAll(tmp)
	copyPath := filepath.Join(tmp, dbPart)
	rev, err := copyDB(ctx, o.DB, copyPath)
	if err != nil {
		return "", Meta{}, err
	}
	sealed, err := bootstrap.Seal(o.Secret, bootstrap.Data{Files: o.Files, Settings: o.Settings})
	if err != nil {
		return "", Meta{}, err
	}
	dbSum, err := fileutil.SHA256(copyPath)
	if err != nil {
		return "", Meta{}, err
	}
	m := Meta{Version: 1, Name: o.Name, Node: o.Node, Created: o.Now.UTC(), Kasa: o.Kasa, Revision: rev,
		SHA256: map[string]string{bootstrapPart: sum(sealed), dbPart: dbSum}}
	metaJSON, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", Meta{}, err
	}
	file := fmt.Sprintf("%s-%s-%d", o.Name, o.Node, o.Now.Unix())
	if o.Compress {
		file += ".gz"
	}
	path := filepath.Join(o.Dir, file)
	if _, err := os.Stat(path); err == nil {
		return "", Meta{}, fmt.Errorf("%s exists: take the snapshot a second later, or give another --name", path)
	}
	part := filepath.Join(tmp, file)
	if err := writeArchive(part, o.Compress, metaJSON, sealed, copyPath); err != nil {
		return "", Meta{}, err
	}
	if err := os.Rename(part, path); err != nil {
		return "", Meta{}, err
	}
	return path, m, nil
}

// copyDB copies the SQLite database src to dst, consistently, and returns
// kine's revision in the copy.
func copyDB(ctx context.Context, src, dst string) (int64, error) {
	if _, err := os.Stat(src); err != nil {
		return 0, fmt.Errorf("the datastore: %w", err)
	}
	db, err := sql.Open("sqlite3", "file:"+src+"?_busy_timeout=30000")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", dst); err != nil {
		return 0, fmt.Errorf("copy %s: %w", src, err)
	}
	if err := os.Chmod(dst, 0o600); err != nil {
		return 0, err
	}
	return Revision(ctx, dst)
}

func writeArchive(path string, compress bool, metaJSON, sealed []byte, dbPath string) (err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	var w io.Writer = f
	var gz *gzip.Writer
	if compress {
		gz = gzip.NewWriter(f)
		w = gz
	}
	tw := tar.NewWriter(w)
	for _, p := range []struct {
		name string
		data []byte
	}{{metaPart, metaJSON}, {bootstrapPart, sealed}} {
		if err := tw.WriteHeader(&tar.Header{Name: p.name, Mode: 0o600, Size: int64(len(p.data)), Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := tw.Write(p.data); err != nil {
			return err
		}
	}
	db, err := os.Open(dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	fi, err := db.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: dbPart, Mode: 0o600, Size: fi.Size(), Format: tar.FormatPAX}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, db); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if gz != nil {
		if err := gz.Close(); err != nil {
			return err
		}
	}
	return f.Sync()
}

// open reads the archive at path part by part: meta.json first; each
// part is handed to fn with its name.
func open(path string, fn func(name string, r io.Reader) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return damaged(path, err)
		}
		defer gz.Close()
		r = gz
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return damaged(path, err)
		}
		if err := fn(h.Name, tr); err != nil {
			return err
		}
	}
}

func damaged(path string, err error) error {
	return fmt.Errorf("%s is not a kasa snapshot, or is damaged: %w", path, err)
}

// ReadMeta reads the Meta of the snapshot at path.
func ReadMeta(path string) (Meta, error) {
	var m Meta
	errDone := errors.New("done")
	err := open(path, func(name string, r io.Reader) error {
		if name != metaPart {
			return damaged(path, fmt.Errorf("%s before %s", name, metaPart))
		}
		if err := json.NewDecoder(io.LimitReader(r, 1<<20)).Decode(&m); err != nil {
			return damaged(path, err)
		}
		return errDone
	})
	if err == nil {
		err = damaged(path, errors.New("no "+metaPart))
	}
	if !errors.Is(err, errDone) {
		return Meta{}, err
	}
	if m.Version != 1 {
		return Meta{}, fmt.Errorf("%s is a snapshot of version %d, which this kasa does not know: use a newer kasa", path, m.Version)
	}
	return m, nil
}

// Extracted is a snapshot unpacked and checked: its Meta, the server
// folder's files and settings it holds, and its database in a file.
type Extracted struct {
	Meta Meta
	Data bootstrap.Data
	DB   string // in the folder given to Extract
}

// Extract checks the snapshot at path (every part's sha256), opens its
// sealed part with secret and writes its database into dir.
func Extract(path, secret, dir string) (Extracted, error) {
	var x Extracted
	var sealed []byte
	x.DB = filepath.Join(dir, dbPart)
	seen := map[string]string{}
	err := open(path, func(name string, r io.Reader) error {
		switch name {
		case metaPart:
			if err := json.NewDecoder(io.LimitReader(r, 1<<20)).Decode(&x.Meta); err != nil {
				return damaged(path, err)
			}
		case bootstrapPart:
			b, err := io.ReadAll(io.LimitReader(r, 64<<20))
			if err != nil {
				return damaged(path, err)
			}
			sealed, seen[name] = b, sum(b)
		case dbPart:
			h := sha256.New()
			if err := fileutil.WriteFileFrom(x.DB, io.TeeReader(r, h), 0o600); err != nil {
				return err
			}
			seen[name] = hex.EncodeToString(h.Sum(nil))
		default:
			return damaged(path, fmt.Errorf("unknown part %s", name))
		}
		return nil
	})
	if err != nil {
		return Extracted{}, err
	}
	if x.Meta.Version != 1 {
		return Extracted{}, fmt.Errorf("%s is a snapshot of version %d, which this kasa does not know", path, x.Meta.Version)
	}
	for _, part := range []string{bootstrapPart, dbPart} {
		if seen[part] == "" || seen[part] != x.Meta.SHA256[part] {
			return Extracted{}, fmt.Errorf("%s is damaged: its %s does not match its checksum; take another snapshot file", path, part)
		}
	}
	x.Data, err = bootstrap.Open(secret, sealed)
	if errors.Is(err, bootstrap.ErrWrongToken) {
		return Extracted{}, fmt.Errorf("%s was taken on a cluster with another server token: give the token of the server it was taken on (--token)", path)
	}
	return x, err
}

// Info is a snapshot file in a folder of snapshots.
type Info struct {
	Path string
	Size int64
	Meta Meta
}

// List returns the snapshots of dir, oldest first; files that are not
// snapshots are left out.
func List(dir string) ([]Info, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var list []Info
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		m, err := ReadMeta(path)
		if err != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		list = append(list, Info{Path: path, Size: fi.Size(), Meta: m})
	}
	slices.SortFunc(list, func(a, b Info) int { return a.Meta.Created.Compare(b.Meta.Created) })
	return list, nil
}

// Prune deletes the oldest snapshots of dir named name until retention
// are left, and returns the paths it deleted.
func Prune(dir, name string, retention int) ([]string, error) {
	if retention < 1 {
		return nil, fmt.Errorf("invalid retention %d: keep 1 snapshot or more", retention)
	}
	list, err := List(dir)
	if err != nil {
		return nil, err
	}
	var mine []Info
	for _, s := range list {
		if s.Meta.Name == name {
			mine = append(mine, s)
		}
	}
	var deleted []string
	for len(mine) > retention {
		if err := os.Remove(mine[0].Path); err != nil {
			return deleted, err
		}
		deleted = append(deleted, mine[0].Path)
		mine = mine[1:]
	}
	return deleted, nil
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// RevisionBump is how far a restore moves the datastore's revision past
// the snapshot's and the replaced database's: past any revision a client
// of the cluster may have seen before the restore (etcd's restore takes
// the same figure).
const RevisionBump = 1_000_000_000

// Revision returns kine's revision in the SQLite database at path.
func Revision(ctx context.Context, path string) (int64, error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var rev sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT MAX(id) FROM kine").Scan(&rev); err != nil {
		return 0, fmt.Errorf("%s is not kine's database: %w", path, err)
	}
	return rev.Int64, nil
}

// Bump makes the restored database at path continue at revision rev
// (above its own), with every revision before rev compacted: a client that
// watched the cluster before the restore, from any revision it saw, is
// told to list again, instead of missing the writes the restore undid.
// The revision moves as kine fills a gap (a deleted "gap-" row), and the
// compaction mark is kine's compact_rev_key row.
func Bump(ctx context.Context, path string, rev int64) error {
	db, err := sql.Open("sqlite3", "file:"+path+"?_txlock=immediate")
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
	var cur sql.NullInt64
	if err := tx.QueryRowContext(ctx, "SELECT MAX(id) FROM kine").Scan(&cur); err != nil {
		return fmt.Errorf("%s is not kine's database: %w", path, err)
	}
	if rev <= cur.Int64 {
		return fmt.Errorf("bump to %d: the database is at %d already", rev, cur.Int64)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO kine(id, name, created, deleted, create_revision, prev_revision, lease, value, old_value)
		VALUES(?, ?, 0, 1, 0, 0, 0, NULL, NULL)`, rev, fmt.Sprintf("gap-%d", rev)); err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, "UPDATE kine SET prev_revision = ? WHERE id = (SELECT MAX(id) FROM kine WHERE name = 'compact_rev_key')", rev)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%s has no compact_rev_key: not a database kine has served", path)
	}
	return tx.Commit()
}

// ParseSchedule reads a cron schedule: five fields (minute hour day month
// weekday, as k3s's --etcd-snapshot-schedule-cron), or six with seconds
// first.
func ParseSchedule(spec string) (cron.Schedule, error) {
	return cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor).Parse(spec)
}
