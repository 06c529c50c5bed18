package harness

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcStat returns the fields of /proc/PID/stat after the command's name
// (which may hold spaces): the process's state is [0], its parent [1],
// utime and stime (clock ticks) [11] and [12].
func ProcStat(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	return strings.Fields(s[i+1:]), nil
}

// StatusKiB reads one kB figure of /proc/PID/status, such as VmRSS or VmHWM.
func StatusKiB(pid int, key string) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	n, err := StatusFieldKiB(string(b), key)
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	return n, nil
}

// StatusFieldKiB reads one kB figure from the text of a /proc/PID/status
// (read here, or in a test host).
func StatusFieldKiB(status, key string) (int, error) {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
		}
	}
	return 0, fmt.Errorf("no %s in its status", key)
}
