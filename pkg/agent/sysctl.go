package agent

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/kasa-io/kasa/pkg/fileutil"
)

// ChangedSysctls are the kernel settings that a node changes: kasa for the
// pod network, the kubelet and kube-proxy for themselves.
var ChangedSysctls = []string{
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

// SysctlStateFile keeps the values the settings had before kasa's first
// start, for `kasa killall` to restore.
func SysctlStateFile(dataDir string) string {
	return filepath.Join(dataDir, "agent", "sysctl-before.json")
}

// SaveSysctls records the current values of keys unless a record exists:
// the first start sees the host as it was.
func SaveSysctls(file string, keys []string) error {
	if _, err := os.Stat(file); err == nil {
		return nil
	}
	vals := map[string]string{}
	for _, k := range keys {
		b, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			continue // not on this kernel
		}
		vals[k] = strings.TrimSpace(string(b))
	}
	data, err := json.MarshalIndent(vals, "", "  ")
	if err != nil {
		return err
	}
	return fileutil.WriteFile(file, data, 0o600)
}

// RestoreSysctls writes the recorded values back and removes the record.
func RestoreSysctls(file string, write func(key, value string) error) error {
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
