package server

import (
	"errors"
	"fmt"

	"github.com/kasa-io/kasa/pkg/fileutil"
)

// ErrInUse is returned when another kasa server holds the data dir.
var ErrInUse = errors.New("data dir in use")

// lockDataDir takes the data dir's lock or says which process holds it. It
// creates the folder that holds the lock file and writes nothing else.
func lockDataDir(dataDir, file string) (*fileutil.Lock, error) {
	return fileutil.LockFile(file, func(err error) error {
		return fmt.Errorf("data dir %s is not usable: %w (pick another with --data-dir)", dataDir, err)
	}, func(pid string) error {
		return fmt.Errorf("%w: another kasa server (pid %s) is running on %s; stop it first or pick another --data-dir", ErrInUse, pid, dataDir)
	})
}
