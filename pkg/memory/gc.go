package memory

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/kasa-io/kasa/pkg/component"
)

// The server's collector paces by its live heap. An idle server's heap is
// about 100 MiB, where Go's default (collect when the heap has doubled)
// costs little memory and keeps the API fast. Under many nodes and pods the
// live heap is most of the process (720 MiB at 15,000 pods: the pods decoded
// once in the API server's watch cache and again in the scheduler's and the
// controllers' informers), and doubling it put the server near 2 GiB
// (docs/benchmarks.md, "Scale"). Above largeHeap it collects at 50% growth;
// below smallHeap it goes back to 100%, so that a heap near the bound does
// not switch back and forth.
const (
	largeHeap   = 512 << 20
	smallHeap   = 384 << 20
	loadPercent = 50
	restPercent = 100
	paceEvery   = 10 * time.Second
)

// gcPercentFor is the GOGC for a live heap of live bytes, given the
// current setting.
func gcPercentFor(live uint64, current int) int {
	switch {
	case live >= largeHeap:
		return loadPercent
	case live < smallHeap:
		return restPercent
	default:
		return current
	}
}

// PaceGC sets the process's GOGC from its live heap every ten seconds
// until ctx ends, and logs each change. A GOGC in the environment is the
// user's choice: the caller then does not call it.
func PaceGC(ctx context.Context, log *slog.Logger) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	current := restPercent
	go component.Periodic(ctx, paceEvery, func() {}, func() {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return
		}
		live := sample[0].Value.Uint64()
		if next := gcPercentFor(live, current); next != current {
			debug.SetGCPercent(next)
			log.Info("the collector's pace follows the live heap", "live_heap_mib", live>>20, "gogc", next)
			current = next
		}
	})
}
