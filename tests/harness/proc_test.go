package harness

import (
	"os"
	"strconv"
	"testing"
)

// TestProc: this test's own process read back: its parent from the stat
// fields, a resident set in kB, and an error for a figure that is not there.
func TestProc(t *testing.T) {
	f, err := ProcStat(os.Getpid())
	if err != nil || len(f) < 13 {
		t.Fatalf("%v %v", f, err)
	}
	if f[1] != strconv.Itoa(os.Getppid()) {
		t.Errorf("parent %s, want %d", f[1], os.Getppid())
	}
	if kib, err := StatusKiB(os.Getpid(), "VmRSS"); err != nil || kib <= 0 {
		t.Errorf("VmRSS %d %v", kib, err)
	}
	if _, err := StatusKiB(os.Getpid(), "VmNothing"); err == nil {
		t.Error("a figure /proc/self/status does not have: no error")
	}
	if _, err := ProcStat(-1); err == nil {
		t.Error("no such process: no error")
	}
}
