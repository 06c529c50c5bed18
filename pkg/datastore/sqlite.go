package datastore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // kine's SQLite driver, linked by kine too
)

// DamagedError is a SQLite datastore that SQLite cannot read whole.
type DamagedError struct {
	File   string
	Reason string
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("the datastore %s is damaged (%s): restore the latest snapshot with kasa server --cluster-reset --cluster-reset-restore-path FILE (kasa db snapshot list shows the snapshots; they are in <data-dir>/server/db/snapshots unless --db-snapshot-dir says otherwise), or move the file and its -wal and -shm files away to start an empty cluster", e.File, e.Reason)
}

// CheckSQLite checks the SQLite datastore at path with SQLite's
// quick_check (every page and index, not their agreement); a file that is
// not there is fine (a new cluster). It runs at start, before kine opens
// the file, so that a damaged one is a clear error instead of a restart
// loop.
func CheckSQLite(ctx context.Context, path string) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=30000")
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return &DamagedError{File: path, Reason: err.Error()}
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return &DamagedError{File: path, Reason: err.Error()}
		}
		for _, l := range strings.Split(line, "\n") {
			if l = strings.TrimSpace(l); l != "" && l != "ok" {
				problems = append(problems, l)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return &DamagedError{File: path, Reason: err.Error()}
	}
	if len(problems) > 0 {
		if len(problems) > 3 {
			problems = append(problems[:3], fmt.Sprintf("and %d more problems", len(problems)-3))
		}
		return &DamagedError{File: path, Reason: strings.Join(problems, "; ")}
	}
	var tables int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'kine'").Scan(&tables); err != nil {
		return &DamagedError{File: path, Reason: err.Error()}
	}
	if tables != 1 {
		return &DamagedError{File: path, Reason: "it holds no kine table"}
	}
	return nil
}

// SQLiteStats are the figures of a SQLite datastore that kasa db status
// shows and the server watches.
type SQLiteStats struct {
	File      string `json:"file"`
	Size      int64  `json:"size"`    // bytes of the database file
	WALSize   int64  `json:"walSize"` // bytes of its write-ahead log
	PageSize  int64  `json:"pageSize"`
	Pages     int64  `json:"pages"`
	FreePages int64  `json:"freePages"` // pages that hold nothing, reusable or returned by a vacuum
	Rows      int64  `json:"rows"`      // kine's rows: every kept revision of every key
	Keys      int64  `json:"keys"`      // live keys
	// Revision is kine's latest, CompactRevision the one below which
	// kine's compaction removed old revisions; their difference is what
	// compaction has still to do, plus the 1000 revisions kine keeps.
	Revision        int64 `json:"revision"`
	CompactRevision int64 `json:"compactRevision"`
	// AutoVacuum is SQLite's auto_vacuum mode: 2 (incremental) lets kasa
	// return free pages to the disk without blocking writes for long.
	AutoVacuum int64 `json:"autoVacuum"`
}

// FreeBytes is the space free pages take.
func (s SQLiteStats) FreeBytes() int64 { return s.FreePages * s.PageSize }

// CompactionLag is the number of revisions kine's compaction has not
// removed yet.
func (s SQLiteStats) CompactionLag() int64 { return s.Revision - s.CompactRevision }

// ReadSQLiteStats reads the figures of the SQLite datastore at path; it
// may run while kine uses the file.
func ReadSQLiteStats(ctx context.Context, path string) (SQLiteStats, error) {
	st := SQLiteStats{File: path}
	fi, err := os.Stat(path)
	if err != nil {
		return st, err
	}
	st.Size = fi.Size()
	if wi, err := os.Stat(path + "-wal"); err == nil {
		st.WALSize = wi.Size()
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		return st, err
	}
	defer db.Close()
	for _, q := range []struct {
		sql string
		to  *int64
	}{
		{"PRAGMA page_size", &st.PageSize},
		{"PRAGMA page_count", &st.Pages},
		{"PRAGMA freelist_count", &st.FreePages},
		{"PRAGMA auto_vacuum", &st.AutoVacuum},
		{"SELECT count(*) FROM kine", &st.Rows},
		{"SELECT coalesce(max(id), 0) FROM kine", &st.Revision},
		{"SELECT coalesce(max(prev_revision), 0) FROM kine WHERE name = 'compact_rev_key'", &st.CompactRevision},
		{"SELECT count(*) FROM kine k WHERE k.id IN (SELECT max(id) FROM kine GROUP BY name) AND k.deleted = 0 AND k.name NOT LIKE 'gap-%' AND k.name != 'compact_rev_key'", &st.Keys},
	} {
		if err := db.QueryRowContext(ctx, q.sql).Scan(q.to); err != nil {
			return st, fmt.Errorf("%s: %s: %w", path, q.sql, err)
		}
	}
	return st, nil
}

// Vacuum settings.
const (
	// vacuumStep is how many pages one incremental vacuum returns: a
	// short write transaction, which kine's writers wait for.
	vacuumStep = 512
)

// MakeIncremental switches the SQLite datastore at path to incremental
// auto_vacuum with one VACUUM (which rewrites the file), if it is not in
// that mode; it runs at start, before kine opens the file, when nothing
// waits for it. It reports whether it vacuumed.
func MakeIncremental(ctx context.Context, path string) (bool, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		// A new cluster: the mode is set before kine makes its tables.
		db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL")
		if err != nil {
			return false, err
		}
		defer db.Close()
		_, err = db.ExecContext(ctx, "PRAGMA auto_vacuum = INCREMENTAL")
		if err == nil {
			_, err = db.ExecContext(ctx, "VACUUM")
		}
		return false, err
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=30000")
	if err != nil {
		return false, err
	}
	defer db.Close()
	var mode int64
	if err := db.QueryRowContext(ctx, "PRAGMA auto_vacuum").Scan(&mode); err != nil {
		return false, err
	}
	if mode == 2 {
		return false, nil
	}
	if _, err := db.ExecContext(ctx, "PRAGMA auto_vacuum = INCREMENTAL"); err != nil {
		return false, err
	}
	if _, err := db.ExecContext(ctx, "VACUUM"); err != nil {
		return false, fmt.Errorf("vacuum %s: %w", path, err)
	}
	return true, nil
}

// Reclaim returns free pages of the SQLite datastore at path to the disk,
// vacuumStep pages at a time with a pause between steps, until fewer than
// keep pages are free or ctx ends; it returns the bytes the file shrank by.
func Reclaim(ctx context.Context, path string, keep int64, pause time.Duration) (int64, error) {
	before, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=30000")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for ctx.Err() == nil {
		var free int64
		if err := db.QueryRowContext(ctx, "PRAGMA freelist_count").Scan(&free); err != nil {
			return 0, err
		}
		if free <= keep {
			break
		}
		// Each step of the statement frees one page: it is read to its
		// end, in one short write transaction.
		rows, err := db.QueryContext(ctx, fmt.Sprintf("PRAGMA incremental_vacuum(%d)", min(vacuumStep, free-keep)))
		if err != nil {
			return 0, err
		}
		for rows.Next() {
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return 0, err
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
	// The WAL holds the moved pages until a checkpoint; truncate it too.
	if _, err := db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		return 0, err
	}
	after, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return before.Size() - after.Size(), nil
}
