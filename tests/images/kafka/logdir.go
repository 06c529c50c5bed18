package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// metaProperties is the file kafka-storage.sh format writes into each log
// directory; Kafka refuses a directory whose file names another cluster or
// node.
const metaProperties = "meta.properties"

// stateDir is where, inside the log directory, kfake keeps its state.
const stateDir = "kfake"

// logDir is a log directory formatted for this cluster and node and locked
// for this process.
type logDir struct {
	path string
	lock *os.File
	// formatted says the directory was formatted by this start.
	formatted bool
}

// openLogDir does what the image's launch step (kafka-storage.sh format
// --cluster-id, which checks an existing meta.properties and leaves it) and
// Kafka's start (the .lock file) do with the log directory.
func openLogDir(dir, clusterID string, nodeID int32) (*logDir, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("log directory: %w", err)
	}
	l := &logDir{path: dir}
	path := filepath.Join(dir, metaProperties)
	props, err := readProperties(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := writeMetaProperties(path, clusterID, nodeID); err != nil {
			return nil, err
		}
		l.formatted = true
	case err != nil:
		return nil, err
	default:
		if props["version"] != "1" {
			return nil, fmt.Errorf("%s has version %q: the stand-in reads version 1 (KRaft) only", path, props["version"])
		}
		if got := props["cluster.id"]; got != clusterID {
			return nil, fmt.Errorf("invalid cluster.id in: %s. Expected %s, but read %s (the log directory belongs to another cluster: "+
				"set CLUSTER_ID to %s, or empty the directory)", path, clusterID, got, got)
		}
		if got := props["node.id"]; got != strconv.Itoa(int(nodeID)) {
			return nil, fmt.Errorf("stored node id %s doesn't match previous node id %d in %s: if you moved your data, "+
				"make sure your configured node id matches; for a new node, empty the log directory", got, nodeID, path)
		}
	}
	// Kafka's own guard against two processes on one log directory.
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("failed to acquire lock on file .lock in %s: another Kafka process is using this directory (%w)", dir, err)
	}
	l.lock = f
	return l, nil
}

// state is kfake's folder inside the log directory.
func (l *logDir) state() string { return filepath.Join(l.path, stateDir) }

func (l *logDir) close() {
	if l.lock != nil {
		l.lock.Close() // releases the lock
	}
}

// writeMetaProperties writes meta.properties as Kafka 3.9 does (a Java
// properties file), through a temporary file and a rename.
func writeMetaProperties(path, clusterID string, nodeID int32) error {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "#\n#%s\n", time.Now().UTC().Format("Mon Jan 02 15:04:05 MST 2006"))
	fmt.Fprintf(&b, "node.id=%d\n", nodeID)
	fmt.Fprintf(&b, "directory.id=%s\n", base64.RawURLEncoding.EncodeToString(id))
	fmt.Fprintf(&b, "version=1\n")
	fmt.Fprintf(&b, "cluster.id=%s\n", clusterID)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("format the log directory: %w", err)
	}
	_, err = f.Write(b.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("format the log directory: %w", err)
	}
	return nil
}

// readProperties reads KEY=VALUE lines, skipping blank lines and # or !
// comments: enough for meta.properties.
func readProperties(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	props := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s: line %q is not KEY=VALUE", path, line)
		}
		props[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return props, sc.Err()
}
