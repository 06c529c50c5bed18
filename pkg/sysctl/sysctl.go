// Package sysctl reads and writes kernel settings through /proc/sys, and
// keeps a record of those a node changes, taken before kasa's first start,
// for kasa killall to put back.
package sysctl

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/kasa-io/kasa/pkg/fileutil"
)

// Changed are the kernel settings that a node changes: kasa for the pod
// network, the kubelet and kube-proxy for themselves.
var Changed = []string{
	"net/ipv4/ip_forward",
	"net/bridge/bridge-nf-call-iptables",
	"net/bridge/bridge-nf-call-ip6tables",
	"net/ipv4/conf/all/route_localnet",
	"kernel/panic",
	"kernel/panic_on_oops",
	"kernel/keys/root_maxkeys",
	"kernel/keys/root_maxbytes",
	"vm/overcommit_memory",
	"vm/panic_on_oom",
}

// Read reads a kernel setting, key as under /proc/sys
// (vm/overcommit_memory).
func Read(key string) (string, error) {
	b, err := os.ReadFile(filepath.Join("/proc/sys", key))
	return string(b), err
}

// Write sets a kernel setting, key as under /proc/sys.
func Write(key, value string) error {
	return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644)
}

// Save records in file the values of keys, as read reads them (Read), unless
// file exists: the first start sees the host as it was. A key that read
// cannot read (not on this kernel) is left out.
func Save(file string, keys []string, read func(key string) (string, error)) error {
	if _, err := os.Stat(file); err == nil {
		return nil
	}
	vals := map[string]string{}
	for _, k := range keys {
		v, err := read(k)
		if err != nil {
			continue
		}
		vals[k] = strings.TrimSpace(v)
	}
	data, err := json.MarshalIndent(vals, "", "  ")
	if err != nil {
		return err
	}
	return fileutil.WriteFile(file, data, 0o600)
}

// Restore writes the values recorded in file back with write (Write) and
// removes file; it keeps file when a value could not be written. No file
// is nothing to restore.
func Restore(file string, write func(key, value string) error) error {
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	vals := map[string]string{}
	if err := json.Unmarshal(data, &vals); err != nil {
		return err
	}
	var errs []error
	for k, v := range vals {
		if err := write(k, v); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return os.Remove(file)
	}
	return errors.Join(errs...)
}
