package snapshot

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// kineDB makes a SQLite database with a kine table of n rows.
func kineDB(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE kine (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, created INTEGER, deleted INTEGER,
		create_revision INTEGER, prev_revision INTEGER, lease INTEGER, value BLOB, old_value BLOB)`); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		name := fmt.Sprintf("/registry/k%d", i)
		if i == 0 {
			name = "compact_rev_key"
		}
		if _, err := db.Exec("INSERT INTO kine(name, created, deleted, create_revision, prev_revision, lease, value) VALUES(?, 1, 0, 0, 0, 0, ?)", name, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func options(db, dir string, now time.Time) Options {
	return Options{
		DB: db, Dir: dir, Name: "on-demand", Node: "srv",
		Files:    map[string][]byte{"tls/ca.key": []byte("a key")},
		Settings: map[string]string{"cluster-cidr": "10.42.0.0/16"},
		Secret:   "the-server-secret-0123", Kasa: "test", Now: now,
	}
}

func TestSaveExtract(t *testing.T) {
	db := kineDB(t, 25)
	dir := t.TempDir()
	now := time.Unix(1_800_000_000, 0)
	for _, compress := range []bool{false, true} {
		o := options(db, dir, now)
		o.Compress = compress
		path, m, err := Save(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(dir, fmt.Sprintf("on-demand-srv-%d", now.Unix())); !strings.HasPrefix(path, want) || strings.HasSuffix(path, ".gz") != compress {
			t.Errorf("saved as %s", path)
		}
		now = now.Add(time.Second)
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", path, fi.Mode().Perm())
		}
		if m.Revision != 25 {
			t.Errorf("revision %d, want 25", m.Revision)
		}
		if b, _ := os.ReadFile(path); strings.Contains(string(b), "a key") {
			t.Error("the snapshot holds a key in plaintext")
		}
		x, err := Extract(path, "the-server-secret-0123", t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if string(x.Data.Files["tls/ca.key"]) != "a key" || x.Data.Settings["cluster-cidr"] != "10.42.0.0/16" || x.Meta.Revision != 25 {
			t.Errorf("extracted %+v", x)
		}
		back, _ := sql.Open("sqlite3", "file:"+x.DB+"?mode=ro")
		var n int
		if err := back.QueryRow("SELECT COUNT(*) FROM kine").Scan(&n); err != nil || n != 25 {
			t.Errorf("the extracted database has %d rows (%v), want 25", n, err)
		}
		back.Close()
		if _, err := Extract(path, "another-secret-0123456", t.TempDir()); err == nil || !strings.Contains(err.Error(), "another server token") {
			t.Errorf("a wrong token: %v", err)
		}
	}
	list, err := List(dir)
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %d snapshots, %v", len(list), err)
	}
}

// TestDamaged: a flipped byte in the database part, or a file that is
// not a snapshot, is refused with the file's name.
func TestDamaged(t *testing.T) {
	dir := t.TempDir()
	path, _, err := Save(context.Background(), options(kineDB(t, 5), dir, time.Unix(1_800_000_000, 0)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(b), "SQLite format 3")
	if i < 0 {
		t.Fatal("no database in the archive")
	}
	b[i+200] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Extract(path, "the-server-secret-0123", t.TempDir()); err == nil || !strings.Contains(err.Error(), "does not match its checksum") {
		t.Errorf("a damaged database: %v", err)
	}
	junk := filepath.Join(dir, "junk")
	if err := os.WriteFile(junk, []byte("not a snapshot at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadMeta(junk); err == nil || !strings.Contains(err.Error(), junk) {
		t.Errorf("junk: %v", err)
	}
	if list, _ := List(dir); len(list) != 1 {
		t.Errorf("list takes junk: %v", list)
	}
}

func TestPrune(t *testing.T) {
	db, dir := kineDB(t, 3), t.TempDir()
	now := time.Unix(1_800_000_000, 0)
	var paths []string
	for i := range 4 {
		o := options(db, dir, now.Add(time.Duration(i)*time.Hour))
		p, _, err := Save(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	other := options(db, dir, now)
	other.Name = "scheduled"
	if _, _, err := Save(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	deleted, err := Prune(dir, "on-demand", 2)
	if err != nil || len(deleted) != 2 || deleted[0] != paths[0] || deleted[1] != paths[1] {
		t.Fatalf("pruned %v (%v), want the two oldest", deleted, err)
	}
	list, _ := List(dir)
	if len(list) != 3 {
		t.Errorf("%d left, want 2 on-demand and 1 scheduled", len(list))
	}
	if _, err := Prune(dir, "on-demand", 0); err == nil {
		t.Error("retention 0 was taken")
	}
	if _, _, err := Save(context.Background(), Options{DB: db, Dir: dir, Name: "Bad Name", Now: now}); err == nil {
		t.Error("a bad name was taken")
	}
}

func TestBump(t *testing.T) {
	ctx := context.Background()
	path := kineDB(t, 10)
	if err := Bump(ctx, path, 10+RevisionBump); err != nil {
		t.Fatal(err)
	}
	if rev, err := Revision(ctx, path); err != nil || rev != 10+RevisionBump {
		t.Errorf("revision %d (%v), want %d", rev, err, 10+RevisionBump)
	}
	db, _ := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	defer db.Close()
	var compact int64
	if err := db.QueryRow("SELECT MAX(prev_revision) FROM kine WHERE name = 'compact_rev_key'").Scan(&compact); err != nil || compact != 10+RevisionBump {
		t.Errorf("compacted to %d (%v), want %d", compact, err, 10+RevisionBump)
	}
	if err := Bump(ctx, path, 5); err == nil {
		t.Error("a bump backwards was taken")
	}
}
