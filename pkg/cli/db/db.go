// Package db is `kasa db`: snapshots of a server's SQLite datastore. It
// maps its flags to pkg/server's TakeSnapshot and pkg/snapshot.
package db

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/datadir"
	"github.com/kasa-io/kasa/pkg/server"
	"github.com/kasa-io/kasa/pkg/snapshot"
)

// NewCommand returns `kasa db`.
func NewCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "db",
		Short: "Snapshots of the server's datastore",
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
	cmd.AddCommand(snap)
	return cmd
}

// where finds the data dir and the folder of snapshots.
type where struct {
	dataDir func() (string, error)
	dir     string
}

func (w *where) bind(cmd *cobra.Command) {
	w.dataDir = config.BindDataDir(cmd.Flags(), os.LookupEnv)
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
