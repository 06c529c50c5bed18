// Package memory returns to the kernel the memory that kasa's start-up
// used and no longer needs.
package memory

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ReleaseStartupCode asks the kernel to reclaim the pages of this process's
// executable that are mapped read-only (its code and read-only data), with
// madvise(MADV_PAGEOUT). kasa is one large binary: at start the package
// initialisers of every component it links run, also those a process never
// uses again (an agent runs no API server), and the kernel maps 64 KiB
// around each page they touch. Those clean pages stay resident, counted in
// the process's memory, until memory runs short. Paged out, they are freed;
// the code that runs again comes back from the file on its next use. It
// returns the resident set before and after, in KiB.
func ReleaseStartupCode() (before, after int, err error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, 0, err
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	ranges, err := readOnlyMappings(f, exe)
	if err != nil {
		return 0, 0, err
	}
	before, _ = ResidentKiB()
	for _, r := range ranges {
		// The range comes from /proc/self/maps, not from a Go pointer.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], unix.MADV_PAGEOUT); errno != 0 {
			return before, before, fmt.Errorf("madvise: %w", errno)
		}
	}
	after, _ = ResidentKiB()
	return before, after, nil
}

// readOnlyMappings returns the [start, end) of the mappings of file that
// are not writable, from a /proc/<pid>/maps listing.
func readOnlyMappings(r io.Reader, file string) ([][2]uintptr, error) {
	var out [][2]uintptr
	s := bufio.NewScanner(r)
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) < 6 || strings.Join(f[5:], " ") != file || strings.Contains(f[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil || end <= start {
			return nil, fmt.Errorf("unreadable mapping %q", s.Text())
		}
		out = append(out, [2]uintptr{uintptr(start), uintptr(end)})
	}
	return out, s.Err()
}

// ResidentKiB is this process's resident set (VmRSS).
func ResidentKiB() (int, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/self/status")
}

// ReleaseLater runs ReleaseStartupCode once, delay after it is called,
// unless ctx ends first, and logs what it freed.
func ReleaseLater(ctx context.Context, delay time.Duration, log *slog.Logger) {
	go func() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		before, after, err := ReleaseStartupCode()
		if err != nil {
			log.Warn("could not release the start-up code's pages", "err", err)
			return
		}
		log.Info("released the start-up code's pages", "rss_before_mib", before/1024, "rss_after_mib", after/1024)
	}()
}
