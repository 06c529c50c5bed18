// Package checkconfig checks that this host can run a kasa node, and says
// plainly what is missing and what to do. `kasa check-config` prints the
// whole list; a node runs the same checks at start and refuses to start on
// a failure.
package checkconfig

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Level is how serious a finding is.
type Level int

// Levels.
const (
	OK Level = iota
	Warn
	Fail
)

func (l Level) String() string { return [...]string{"ok", "warning", "FAIL"}[l] }

// Result is one check's finding.
type Result struct {
	Name   string
	Level  Level
	Detail string
	// Fix says what to do, for warnings and failures.
	Fix string
}

// Host is where the checks look; Root "" is this machine.
type Host struct {
	// Root prefixes /proc and /sys paths (tests point it at a fake tree).
	Root string
	// LookPath finds a program; exec.LookPath when nil.
	LookPath func(string) (string, error)
	// Ports are TCP ports that must be free.
	Ports []int
	// NFTables, when set, lists this host's nftables tables: the check that
	// the kernel has nf_tables (the cluster network's guard needs it).
	NFTables func() error
}

func (h Host) path(p string) string { return filepath.Join(h.Root, p) }

func (h Host) read(p string) (string, error) {
	b, err := os.ReadFile(h.path(p))
	return string(b), err
}

func (h Host) exists(p string) bool {
	_, err := os.Stat(h.path(p))
	return err == nil
}

// Run performs every check.
func Run(h Host) []Result {
	if h.LookPath == nil {
		h.LookPath = exec.LookPath
	}
	var out []Result
	out = append(out, h.filesystem("overlay", "overlayfs (the containerd snapshotter)",
		"load the overlay kernel module (modprobe overlay) or use a kernel with CONFIG_OVERLAY_FS"))
	out = append(out, h.sysctlDir("net/bridge", "br_netfilter (pod traffic through iptables)",
		"load the br_netfilter kernel module (modprobe br_netfilter)"))
	out = append(out, h.sysctlDir("net/ipv4", "IPv4 networking", "use a kernel with IPv4"))
	out = append(out, h.cgroups())
	out = append(out, h.program("iptables", "iptables (kube-proxy, the kubelet, the CNI plugins)",
		"install it: apt-get install iptables"))
	out = append(out, h.sysctlDir("net/netfilter", "conntrack (kube-proxy, network policy)",
		"load the nf_conntrack kernel module (modprobe nf_conntrack)"))
	out = append(out, h.warnOnly(h.present("/sys/module/ip_set", "ip_set (network policy)",
		"load the ip_set kernel module (modprobe ip_set), or start the servers with --disable-network-policy")))
	out = append(out, h.warnOnly(h.program("ipset", "ipset (network policy)",
		"install it: apt-get install ipset, or start the servers with --disable-network-policy")))
	if h.NFTables != nil {
		out = append(out, h.nftables())
	}
	out = append(out, h.swap())
	out = append(out, h.ports()...)
	return out
}

// Failed returns the failures, as one error naming each and its fix.
func Failed(results []Result) error {
	var msgs []string
	for _, r := range results {
		if r.Level == Fail {
			msgs = append(msgs, fmt.Sprintf("%s: %s (%s)", r.Name, r.Detail, r.Fix))
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("this host cannot run a kasa node: %s; `kasa check-config` lists every check", strings.Join(msgs, "; "))
}

// Print writes one line per check.
func Print(w io.Writer, results []Result) {
	for _, r := range results {
		line := fmt.Sprintf("%-8s %s: %s", r.Level, r.Name, r.Detail)
		if r.Level != OK && r.Fix != "" {
			line += " -> " + r.Fix
		}
		fmt.Fprintln(w, line)
	}
}

func (h Host) filesystem(fs, name, fix string) Result {
	data, err := h.read("/proc/filesystems")
	if err != nil {
		return Result{Name: name, Level: Fail, Detail: "cannot read /proc/filesystems: " + err.Error(), Fix: "mount /proc"}
	}
	for _, line := range strings.Split(data, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[len(f)-1] == fs {
			return Result{Name: name, Level: OK, Detail: "available"}
		}
	}
	return Result{Name: name, Level: Fail, Detail: fs + " is not in /proc/filesystems", Fix: fix}
}

func (h Host) sysctlDir(dir, name, fix string) Result {
	return h.present(filepath.Join("/proc/sys", dir), name, fix)
}

// present fails unless the path p exists.
func (h Host) present(p, name, fix string) Result {
	if h.exists(p) {
		return Result{Name: name, Level: OK, Detail: "available"}
	}
	return Result{Name: name, Level: Fail, Detail: p + " does not exist", Fix: fix}
}

// CgroupV1 reports whether the host has cgroup v1 (no unified hierarchy at
// /sys/fs/cgroup).
func (h Host) CgroupV1() bool { return !h.exists("/sys/fs/cgroup/cgroup.controllers") }

func (h Host) cgroups() Result {
	name := "cgroups"
	if !h.CgroupV1() {
		data, _ := h.read("/sys/fs/cgroup/cgroup.controllers")
		have := strings.Fields(data)
		var missing []string
		for _, c := range []string{"cpu", "memory", "pids"} {
			if !slices.Contains(have, c) {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			return Result{Name: name, Level: Fail, Detail: "cgroup v2 without controllers " + strings.Join(missing, ", "), Fix: "enable them in the root cgroup"}
		}
		return Result{Name: name, Level: OK, Detail: "cgroup v2"}
	}
	var missing []string
	for _, c := range []string{"cpu", "memory", "pids", "devices"} {
		if !h.exists(filepath.Join("/sys/fs/cgroup", c)) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return Result{Name: name, Level: Fail, Detail: "cgroup v1 without " + strings.Join(missing, ", "), Fix: "mount those cgroup hierarchies, or boot with cgroup v2"}
	}
	return Result{Name: name, Level: Warn, Detail: "cgroup v1, which Kubernetes 1.37 deprecates (kasa sets the kubelet's failCgroupV1: false)",
		Fix: "boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1) when you can"}
}

func (h Host) program(prog, name, fix string) Result {
	p, err := h.LookPath(prog)
	if err != nil {
		return Result{Name: name, Level: Fail, Detail: prog + " is not installed", Fix: fix}
	}
	return Result{Name: name, Level: OK, Detail: p}
}

// warnOnly makes a failure of r a warning: what it checks is needed by a
// part that can be turned off.
func (h Host) warnOnly(r Result) Result {
	if r.Level == Fail {
		r.Level = Warn
	}
	return r
}

func (h Host) nftables() Result {
	name := "nf_tables (the cluster network's guard)"
	if err := h.NFTables(); err != nil {
		return Result{Name: name, Level: Fail, Detail: err.Error(), Fix: "use a kernel with CONFIG_NF_TABLES, CONFIG_NFT_REJECT and CONFIG_NFT_COUNTER"}
	}
	return Result{Name: name, Level: OK, Detail: "available"}
}

func (h Host) swap() Result {
	data, err := h.read("/proc/swaps")
	if err != nil {
		return Result{Name: "swap", Level: Warn, Detail: "cannot read /proc/swaps", Fix: "mount /proc"}
	}
	s := bufio.NewScanner(strings.NewReader(data))
	s.Scan() // header
	if s.Scan() && strings.TrimSpace(s.Text()) != "" {
		return Result{Name: "swap", Level: Fail, Detail: "swap is on and the kubelet refuses to run with it",
			Fix: "turn it off (swapoff -a) or pass --kubelet-arg fail-swap-on=false"}
	}
	return Result{Name: "swap", Level: OK, Detail: "off"}
}

func (h Host) ports() []Result {
	var out []Result
	for _, p := range h.Ports {
		name := fmt.Sprintf("port %d", p)
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
		if err != nil {
			detail := "in use by another program"
			if errors.Is(err, os.ErrPermission) {
				detail = "not allowed to listen on it"
			}
			out = append(out, Result{Name: name, Level: Fail, Detail: detail, Fix: "stop what uses it, or move kasa's port with its flag"})
			continue
		}
		l.Close()
		out = append(out, Result{Name: name, Level: OK, Detail: "free"})
	}
	return out
}
