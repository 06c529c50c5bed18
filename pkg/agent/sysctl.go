package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/kasa-io/kasa/pkg/datadir"
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
	return datadir.New(dataDir).Agent().SysctlsBefore()
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

// KubeletSysctls are the kernel settings the kubelet wants, and sets unless
// told to protect the kernel's defaults: upstream's setupKernelTunables
// (pkg/kubelet/cm), with the values of k8s.io/component-helpers'
// node/util/sysctl.
var KubeletSysctls = map[string]int{
	"vm/overcommit_memory":      1,
	"vm/panic_on_oom":           0,
	"kernel/panic":              10,
	"kernel/panic_on_oops":      1,
	"kernel/keys/root_maxkeys":  1000000,
	"kernel/keys/root_maxbytes": 25000000,
}

// ErrKernelDefaults is returned when --protect-kernel-defaults is set and
// the kernel's settings are not those the kubelet needs.
var ErrKernelDefaults = errors.New("--protect-kernel-defaults: the kernel's settings differ from what the kubelet needs, and it may not change them")

// CheckKernelDefaults reads each of KubeletSysctls with read (a key such as
// vm/overcommit_memory, as under /proc/sys) and returns ErrKernelDefaults,
// with each setting that differs, its value and the one wanted, and the
// commands that set them, when any differs. The kubelet would find the
// same, but end the whole process with a one-line error.
func CheckKernelDefaults(read func(key string) (string, error)) error {
	keys := make([]string, 0, len(KubeletSysctls))
	for k := range KubeletSysctls {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var differ, fixes []string
	for _, k := range keys {
		want := KubeletSysctls[k]
		got, err := read(k)
		if err != nil {
			return fmt.Errorf("--protect-kernel-defaults: %w", err)
		}
		got = strings.TrimSpace(got)
		if n, err := strconv.Atoi(got); err == nil && n == want {
			continue
		}
		name := strings.ReplaceAll(k, "/", ".")
		differ = append(differ, fmt.Sprintf("%s is %s, want %d", name, got, want))
		fixes = append(fixes, fmt.Sprintf("%s=%d", name, want))
	}
	if len(differ) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s; set them (sysctl -w %s, and in /etc/sysctl.d/90-kubelet.conf to keep them) or start without --protect-kernel-defaults",
		ErrKernelDefaults, strings.Join(differ, "; "), strings.Join(fixes, " "))
}

// ReadSysctl reads a kernel setting, key as under /proc/sys.
func ReadSysctl(key string) (string, error) {
	b, err := os.ReadFile(filepath.Join("/proc/sys", key))
	return string(b), err
}
