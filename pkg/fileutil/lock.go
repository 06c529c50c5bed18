package fileutil

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Lock is an exclusive lock on a file (a data dir's, the node's), held for
// the life of a process. The kernel drops it when the process ends, however
// it ends, so a killed process never leaves a stale lock behind.
type Lock struct{ f *os.File }

// LockFile takes the lock on file, creating the file and its folder. When
// the folder or file cannot be used it returns unusable(err); when another
// process holds the lock it returns held(pid), with the pid that process
// wrote into the file ("unknown" when none).
func LockFile(file string, unusable func(error) error, held func(pid string) error) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return nil, unusable(err)
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, unusable(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		owner, _ := os.ReadFile(file)
		f.Close()
		pid := strings.TrimSpace(string(owner))
		if pid == "" {
			pid = "unknown"
		}
		return nil, held(pid)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Release drops the lock.
func (l *Lock) Release() {
	_ = l.f.Truncate(0)
	_ = l.f.Close()
}
