package server

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/client-go/kubernetes"

	"github.com/kasa-io/kasa/pkg/agent"
	"github.com/kasa-io/kasa/pkg/component"
	"github.com/kasa-io/kasa/pkg/datastore"
)

// Thresholds of the SQLite datastore's upkeep.
const (
	// dbCheckEvery is the default of --test-db-check-interval.
	dbCheckEvery = 5 * time.Minute
	// Free pages are returned to the disk when they take more than half
	// of the file and more than reclaimFloor; what the writes of the last
	// checks needed, a tenth of the used bytes and at least keepFree stay
	// free for the next writes.
	reclaimFloor = 32 << 20
	keepFree     = 4 << 20
	// The disk is short when less than lowDiskFactor times the database
	// is free, or less than lowDiskFloor.
	lowDiskFactor = 2
	lowDiskFloor  = 512 << 20
	// Compaction is behind when it did not move between two checks while
	// more than this many revisions were written.
	compactionStall = 1000
)

// dbHealth watches the SQLite datastore every dbCheckEvery: it returns
// free pages to the disk in short steps (each a brief write that kine's
// writers wait for, never one long lock), and warns, in the log and as an
// event on the node, when the disk runs short or kine's compaction (which
// the API server asks for every 5 minutes) falls behind.
func (s *start) dbHealth() component.Component {
	file := s.p.SQLite()
	log := s.log.With("component", "db-health")
	return component.Func{ComponentName: "db-health", RunFunc: func(ctx context.Context, ready func()) error {
		ready()
		var client kubernetes.Interface
		if s.cfg.Agent != nil {
			client, _ = kubernetes.NewForConfig(s.adminRC)
		}
		warn := func(reason, msg string) {
			log.Warn(msg)
			if client != nil {
				if err := agent.NodeEvent(ctx, client, s.cfg.NodeName, reason, msg, time.Now()); err != nil {
					log.Warn("could not record the warning as an event", "err", err)
				}
			}
		}
		var prev datastore.SQLiteStats
		var recent []int64 // the used bytes at the last checks
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(cmp.Or(s.cfg.DBCheckInterval, dbCheckEvery)):
			}
			st, err := datastore.ReadSQLiteStats(ctx, file)
			if err != nil {
				log.Error("reading the datastore's figures failed", "err", err)
				continue
			}
			log.Debug("datastore", "size", st.Size, "wal", st.WALSize, "free", st.FreeBytes(), "rows", st.Rows, "revision", st.Revision, "compacted", st.CompactRevision)
			// Pages the writes of the last 6 checks (30 minutes) needed stay
			// free: under a steady churn the file keeps its peak size
			// instead of shrinking and growing again.
			used := st.Size - st.FreeBytes()
			recent = append(recent, used)
			if len(recent) > 6 {
				recent = recent[1:]
			}
			keepBytes := max(keepFree, used/10, slices.Max(recent)-used)
			if st.FreeBytes() > max(reclaimFloor, st.Size/2, keepBytes+reclaimFloor) {
				started := time.Now()
				keep := keepBytes / st.PageSize
				shrank, err := datastore.Reclaim(ctx, file, keep, 50*time.Millisecond)
				if err != nil {
					log.Error("returning the datastore's free pages to the disk failed", "err", err)
				} else {
					log.Info("returned the datastore's free pages to the disk", "file", file, "bytes", shrank, "took", time.Since(started).Round(time.Millisecond))
				}
			}
			var fs unix.Statfs_t
			if err := unix.Statfs(s.p.DB(), &fs); err == nil {
				avail := int64(fs.Bavail) * fs.Bsize
				if avail < max(lowDiskFloor, lowDiskFactor*(st.Size+st.WALSize)) {
					warn("DatastoreDiskLow", fmt.Sprintf("the disk of the datastore %s has %d MiB free, and the datastore takes %d MiB: free some space before writes fail", file, avail>>20, (st.Size+st.WALSize)>>20))
				}
			}
			if prev.Revision != 0 && st.CompactRevision == prev.CompactRevision && st.Revision-prev.Revision > compactionStall {
				warn("DatastoreCompactionBehind", fmt.Sprintf("the datastore's compaction is behind: it stayed at revision %d while %d revisions were written in %s (kasa db status shows the figures)", st.CompactRevision, st.Revision-prev.Revision, cmp.Or(s.cfg.DBCheckInterval, dbCheckEvery)))
			}
			prev = st
		}
	}}
}
