package hosts

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// GlobalSysctls are kernel settings that are not per network namespace, so
// that a host (whose kernel is the machine's) changes them for the
// machine: the kubelet's (kernel.panic, kernel.panic_on_oops,
// vm.overcommit_memory, vm.panic_on_oom, kernel.keys.root_maxkeys and
// root_maxbytes), systemd's (fs.file-max, fs.nr_open) and a few more that
// a node could touch.
var GlobalSysctls = []string{
	"kernel/panic",
	"kernel/panic_on_oops",
	"vm/overcommit_memory",
	"vm/panic_on_oom",
	"kernel/keys/root_maxkeys",
	"kernel/keys/root_maxbytes",
	"fs/file-max",
	"fs/nr_open",
	"fs/inotify/max_user_instances",
	"fs/inotify/max_user_watches",
	"kernel/pid_max",
	"net/netfilter/nf_conntrack_max",
}

// ReadSysctls returns the machine's values of GlobalSysctls.
func ReadSysctls() map[string]string {
	vals := map[string]string{}
	for _, k := range GlobalSysctls {
		if b, err := os.ReadFile(filepath.Join("/proc/sys", k)); err == nil {
			vals[k] = strings.TrimSpace(string(b))
		}
	}
	return vals
}

// RestoreSysctls writes back every setting whose value is no longer the
// one in before, and returns a line for each (and for each it could not
// read or write), in name order.
func RestoreSysctls(before map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(before)) {
		want := before[k]
		p := filepath.Join("/proc/sys", k)
		b, err := os.ReadFile(p)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", k, err))
			continue
		}
		if got := strings.TrimSpace(string(b)); got != want {
			line := fmt.Sprintf("kernel setting %s was %s before and is %s after; writing %s back", k, want, got, want)
			if err := os.WriteFile(p, []byte(want), 0o644); err != nil {
				line += fmt.Sprintf(" failed: %v", err)
			}
			out = append(out, line)
		}
	}
	return out
}
