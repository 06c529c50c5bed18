// Package db is `kasa db`: snapshots of a server's SQLite datastore. It
// maps its flags to pkg/server's TakeSnapshot and pkg/snapshot.
package db

import (
	"errors"
	"fmt"
	"github.com/kasa-io/kasa/pkg/datastore"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kasa-io/kasa/pkg/cli/output"
	"github.com/kasa-io/kasa/pkg/datadir"
	"github.com/kasa-io/kasa/pkg/server"
	"github.com/kasa-io/kasa/pkg/settings"
	"github.com/kasa-io/kasa/pkg/snapshot"
)

// NewCommand returns `kasa db`.
func NewCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "db",
		Short: "The server's datastore: its health and its snapshots",
	}
	snap := &cobra.Command{
		Use:   "snapshot",
		Short: "Save, list, delete and prune snapshots of the SQLite datastore (on a server)",
		Long: `A snapshot is one file: a consistent copy of the server's SQLite datastore, taken while it runs,
with the CAs, keys, tokens and encryption keys a restore needs (sealed with the server token) and
the cluster-wide settings. The server also takes them on a schedule (--db-snapshot-schedule-cron,
--db-snapshot-retention). Restore one with kasa server --cluster-reset --cluster-reset-restore-path FILE.
These commands run on the server, as root, and find its data dir as kasa server does (--data-dir,
else KASA_DATA_DIR, else data-dir in the config file).`,
	}
	snap.AddCommand(saveCommand(), listCommand(), deleteCommand(), pruneCommand())
	cmd.AddCommand(snap, statusCommand())
	return cmd
}

// where finds the data dir and the folder of snapshots.
type where struct {
	dataDir func() (string, error)
	dir     string
}

func (w *where) bind(cmd *cobra.Command) {
	w.dataDir = settings.BindDataDir(cmd.Flags(), os.LookupEnv)
	cmd.Flags().StringVar(&w.dir, "dir", "", "folder of the snapshots (default: <data-dir>/server/db/snapshots)")
}

// resolve returns the data dir and the folder of snapshots.
func (w *where) resolve() (string, string, error) {
	dataDir, err := w.dataDir()
	if err != nil {
		return "", "", err
	}
	dir := w.dir
	if dir == "" {
		dir = datadir.New(dataDir).Server().Snapshots()
	} else if dir, err = filepath.Abs(dir); err != nil {
		return "", "", err
	}
	return dataDir, dir, nil
}

func saveCommand() *cobra.Command {
	var w where
	var name string
	var compress bool
	cmd := &cobra.Command{
		Use:   "save",
		Short: "Take a snapshot now",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dataDir, dir, err := w.resolve()
			if err != nil {
				return err
			}
			node, err := os.Hostname()
			if err != nil {
				return err
			}
			start := time.Now()
			path, m, err := server.TakeSnapshot(cmd.Context(), dataDir, server.SnapshotRequest{
				Name: name, Node: strings.ToLower(node), Dir: dir, Compress: compress, Now: start,
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s (revision %d, %s)\n", path, m.Revision, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	w.bind(cmd)
	cmd.Flags().StringVar(&name, "name", "on-demand", "the snapshot's name, the start of its file's")
	cmd.Flags().BoolVar(&compress, "compress", false, "gzip the snapshot")
	return cmd
}

func listCommand() *cobra.Command {
	var w where
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the snapshots, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, dir, err := w.resolve()
			if err != nil {
				return err
			}
			list, err := snapshot.List(dir)
			if err != nil {
				return err
			}
			printList(cmd.OutOrStdout(), list)
			return nil
		},
	}
	w.bind(cmd)
	return cmd
}

func printList(out io.Writer, list []snapshot.Info) {
	w := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
	fmt.Fprintln(w, "NAME\tSIZE\tCREATED\tREVISION\tLOCATION")
	for _, s := range list {
		fmt.Fprintf(w, "%s\t%d\t%s\t%d\t%s\n", filepath.Base(s.Path), s.Size, s.Meta.Created.Format(time.RFC3339), s.Meta.Revision, s.Path)
	}
	w.Flush()
}

func deleteCommand() *cobra.Command {
	var w where
	cmd := &cobra.Command{
		Use:   "delete FILE...",
		Short: "Delete snapshots, by file name (as list shows) or path",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, dir, err := w.resolve()
			if err != nil {
				return err
			}
			var errs []error
			for _, a := range args {
				path := a
				if !strings.Contains(a, "/") {
					path = filepath.Join(dir, a)
				}
				// Only snapshots: a typo never deletes another file.
				if _, err := snapshot.ReadMeta(path); err != nil {
					errs = append(errs, fmt.Errorf("%s: not deleted: %w", a, err))
					continue
				}
				if err := os.Remove(path); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", path)
			}
			return errors.Join(errs...)
		},
	}
	w.bind(cmd)
	return cmd
}

func pruneCommand() *cobra.Command {
	var w where
	var name string
	var retention int
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Delete the oldest snapshots of a name, keeping --retention",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, dir, err := w.resolve()
			if err != nil {
				return err
			}
			deleted, err := snapshot.Prune(dir, name, retention)
			for _, d := range deleted {
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", d)
			}
			return err
		},
	}
	w.bind(cmd)
	cmd.Flags().StringVar(&name, "name", "on-demand", "the name of the snapshots to prune (the scheduled ones: db-snapshot)")
	cmd.Flags().IntVar(&retention, "retention", 5, "how many of the newest to keep")
	return cmd
}

func statusCommand() *cobra.Command {
	var format string
	var dataDir func() (string, error)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the SQLite datastore's size, free pages, rows and compaction (on a server)",
		Long: `status reads the server's SQLite datastore (<data-dir>/server/db/state.db) while it runs: the
file's and its write-ahead log's sizes, the free pages (the server returns them to the disk when they
pass half of the file), kine's rows and live keys, and its revision and compacted revision: kine
keeps the last 1000 revisions and the API server compacts the rest every minute, to the revision of
the minute before, so a lag far above 1000 plus 2 minutes of writes means compaction is behind.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := output.Check(format); err != nil {
				return err
			}
			dir, err := dataDir()
			if err != nil {
				return err
			}
			file := datadir.New(dir).Server().SQLite()
			if _, err := os.Stat(file); err != nil {
				return fmt.Errorf("no SQLite datastore in the data dir %s (%w): run this on a server, with its --data-dir; a server with --datastore-endpoint keeps its data in that database", dir, errors.Unwrap(err))
			}
			st, err := datastore.ReadSQLiteStats(cmd.Context(), file)
			if err != nil {
				return err
			}
			v := struct {
				datastore.SQLiteStats
				FreeBytes     int64 `json:"freeBytes"`
				CompactionLag int64 `json:"compactionLag"`
			}{st, st.FreeBytes(), st.CompactionLag()}
			return output.Print(cmd.OutOrStdout(), format, v, func(w io.Writer) {
				mode := map[int64]string{0: "none", 1: "full", 2: "incremental"}[st.AutoVacuum]
				for _, row := range [][2]string{
					{"file", st.File},
					{"size", mib(st.Size)},
					{"write-ahead log", mib(st.WALSize)},
					{"free pages", fmt.Sprintf("%d (%s)", st.FreePages, mib(st.FreeBytes()))},
					{"auto vacuum", mode},
					{"rows", fmt.Sprint(st.Rows)},
					{"live keys", fmt.Sprint(st.Keys)},
					{"revision", fmt.Sprint(st.Revision)},
					{"compacted to", fmt.Sprint(st.CompactRevision)},
					{"compaction lag", fmt.Sprintf("%d revisions", st.CompactionLag())},
				} {
					fmt.Fprintf(w, "%s:\t%s\n", row[0], row[1])
				}
			})
		},
	}
	dataDir = settings.BindDataDir(cmd.Flags(), os.LookupEnv)
	output.Bind(cmd, &format)
	return cmd
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
