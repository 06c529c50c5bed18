package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrInUse is returned when another kasa server holds the data dir.
var ErrInUse = errors.New("data dir in use")

// ErrNodeRunning is returned when another kasa node runs on this machine.
var ErrNodeRunning = errors.New("a kasa node already runs on this machine")

// fileLock is an exclusive lock on a file (the data dir's, the node's), held for the
// life of the server. The kernel drops it when the process ends, however it
// ends, so a killed server never leaves a stale lock behind.
type fileLock struct{ f *os.File }

// lockDataDir takes the lock or says which process holds it. It creates the
// folder that holds the lock file and writes nothing else.
func lockDataDir(dataDir, file string) (*fileLock, error) {
	return lockFile(file, func(err error) error {
		return fmt.Errorf("data dir %s is not usable: %w (pick another with --data-dir)", dataDir, err)
	}, func(pid string) error {
		return fmt.Errorf("%w: another kasa server (pid %s) is running on %s; stop it first or pick another --data-dir", ErrInUse, pid, dataDir)
	})
}

// lockNode takes the machine-wide lock of a node: one kasa node per machine,
// since a node owns the kubelet's ports, /run/kasa and the pod network.
func lockNode(file string) (*fileLock, error) {
	return lockFile(file, func(err error) error {
		return fmt.Errorf("%s is not usable: %w", filepath.Dir(file), err)
	}, func(pid string) error {
		return fmt.Errorf("%w (pid %s): stop it first (kasa killall), or run this server with --disable-agent", ErrNodeRunning, pid)
	})
}

func lockFile(file string, unusable func(error) error, held func(pid string) error) (*fileLock, error) {
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
	return &fileLock{f: f}, nil
}

func (l *fileLock) release() {
	_ = l.f.Truncate(0)
	_ = l.f.Close()
}
