package images

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/kasa-io/kasa/pkg/component"
)

// Loader imports every archive found in its folders at start, and then
// every archive added or changed while it runs. A file that fails to import
// is reported with its name and skipped; it is tried again when it changes.
type Loader struct {
	Importer Importer
	Dirs     []string
	// Inbox is the folder where people drop archives (<data-dir>/agent/images),
	// scanned like Dirs and made at start, so that the first `cp app.tar` on a
	// new node has somewhere to go.
	Inbox string
	// Interval between scans of the folders; 5 s when zero.
	Interval time.Duration
	Log      *slog.Logger
}

var _ component.Component = (*Loader)(nil)

// Name implements component.Component.
func (l *Loader) Name() string { return "images" }

type stamp struct {
	size int64
	mod  time.Time
}

// Run implements component.Component: ready after the first scan.
func (l *Loader) Run(ctx context.Context, ready func()) error {
	if l.Inbox != "" {
		if err := os.MkdirAll(l.Inbox, 0o755); err != nil {
			return fmt.Errorf("make the images folder: %w", err)
		}
	}
	seen := map[string]stamp{}
	component.Periodic(ctx, l.Interval, ready, func() { l.scan(ctx, seen) })
	return nil
}

func (l *Loader) scan(ctx context.Context, seen map[string]stamp) {
	var files []string
	dirs := l.Dirs
	if l.Inbox != "" {
		dirs = append(slices.Clip(dirs), l.Inbox)
	}
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !e.Type().IsRegular() || !IsArchive(e.Name()) {
				continue
			}
			files = append(files, filepath.Join(d, e.Name()))
		}
	}
	sort.Strings(files)
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			continue
		}
		now := stamp{st.Size(), st.ModTime()}
		if prev, ok := seen[f]; ok && prev == now {
			continue
		}
		// A file still being written changes between scans; wait for it.
		if time.Since(st.ModTime()) < time.Second {
			continue
		}
		seen[f] = now
		start := time.Now()
		if err := l.Importer.Import(ctx, f); err != nil {
			if ctx.Err() == nil {
				l.Log.Error("image archive not imported; fix or remove the file", "file", f, "err", err)
			}
			continue
		}
		l.Log.Info("imported image archive", "file", f, "took", time.Since(start).Round(time.Millisecond))
	}
}
