package agent

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

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
