package datastore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// kineDB makes a database with kine's table at path, holding n keys of
// 4 KiB each.
func kineDB(t *testing.T, path string, n int) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS kine (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, created INTEGER, deleted INTEGER,
		create_revision INTEGER, prev_revision INTEGER, lease INTEGER, value BLOB, old_value BLOB)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO kine(name, created, deleted, create_revision, prev_revision, lease) VALUES('compact_rev_key', 0, 0, 0, 0, 0)`); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := db.Exec(`INSERT INTO kine(name, created, deleted, create_revision, prev_revision, lease, value) VALUES(?, 1, 0, 0, 0, 0, ?)`,
			fmt.Sprintf("/registry/configmaps/default/c%d", i), make([]byte, 4096)); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// TestCheckSQLite: a sound file and a missing one pass; a file with
// damaged pages, one that is not a database and one without kine's table
// are refused with the file's name and the way back.
func TestCheckSQLite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	good := filepath.Join(dir, "state.db")
	db := kineDB(t, good, 200)
	db.Close()
	if err := CheckSQLite(ctx, good); err != nil {
		t.Fatalf("sound file: %v", err)
	}
	if err := CheckSQLite(ctx, filepath.Join(dir, "absent.db")); err != nil {
		t.Fatalf("no file: %v", err)
	}

	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	damaged := filepath.Join(dir, "damaged.db")
	// Pages after the first: the header and schema stay readable.
	for i := 8192; i < len(b)-4096; i += 4096 {
		copy(b[i+100:i+400], strings.Repeat("\xff", 300))
	}
	if err := os.WriteFile(damaged, b, 0o600); err != nil {
		t.Fatal(err)
	}
	notDB := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("not sqlite ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.db")
	odb, err := sql.Open("sqlite3", "file:"+other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := odb.Exec("CREATE TABLE t (x)"); err != nil {
		t.Fatal(err)
	}
	odb.Close()
	for _, f := range []string{damaged, notDB, other} {
		err := CheckSQLite(ctx, f)
		var de *DamagedError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), f) || !strings.Contains(err.Error(), "--cluster-reset-restore-path") {
			t.Errorf("%s: %v", filepath.Base(f), err)
		}
	}
}

// TestReclaim: a datastore made incremental returns the pages its deleted
// rows freed to the disk, and its figures say so.
func TestReclaim(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	if _, err := MakeIncremental(ctx, path); err != nil {
		t.Fatal(err)
	}
	db := kineDB(t, path, 2000)
	if _, err := db.Exec("DELETE FROM kine WHERE id > 200"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	st, err := ReadSQLiteStats(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if st.AutoVacuum != 2 || st.Rows != 200 || st.FreePages < 1000 || st.Revision != 200 || st.Keys != 199 {
		t.Fatalf("stats before: %+v", st)
	}
	shrank, err := Reclaim(ctx, path, 16, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	after, err := ReadSQLiteStats(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if shrank < 4<<20 || after.FreePages > 16 || after.Size != st.Size-shrank || after.Rows != 200 {
		t.Fatalf("reclaimed %d bytes; stats after: %+v", shrank, after)
	}
	if vacuumed, err := MakeIncremental(ctx, path); err != nil || vacuumed {
		t.Errorf("an incremental file vacuumed again: %v %v", vacuumed, err)
	}
}
