// Package killall stops everything a kasa node runs on this machine and
// undoes what it changed outside its data dir, leaving the data in place:
// kasa's processes, containerd, the shims and every pod's processes; the
// mounts; the pod network's interfaces; the iptables chains and rules of
// Kubernetes, flannel, the CNI plugins and the network policy controller,
// and its ipsets; the cluster network's guard (nftables table and route);
// the kubelet's cgroups; and the kernel settings kasa changed, restored to
// what they were.
package killall

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/kasa-io/kasa/pkg/datadir"
	"github.com/kasa-io/kasa/pkg/netguard"
	"github.com/kasa-io/kasa/pkg/sysctl"
)

// Options say what to clean.
type Options struct {
	DataDir string
	// RunDir is the node's run dir (datadir.RunDir).
	RunDir string
	// Self is the pid of the calling process, never killed.
	Self int
	// KasaExe is the kasa binary; processes running it are kasa's.
	KasaExe string
	Log     *slog.Logger
}

// Run does the whole clean-up; it goes on after a failed step and returns
// every failure at the end.
func Run(o Options) error {
	var errs []error
	step := func(name string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	step("stop kasa", stopKasa(o))
	layout := datadir.New(o.DataDir)
	step("kill containers", killUnder(layout.Bundles(), o))
	step("kill pods", killPodCgroups(cgroupRoots(), o.Self))
	step("unmount", unmountAll(o))
	step("network interfaces", deleteInterfaces())
	step("iptables", cleanIptables())
	step("ipsets", destroyIPSets())
	step("network guard", netguard.Remove())
	step("cgroups", removeCgroups())
	step("kernel settings", sysctl.Restore(layout.Agent().SysctlsBefore(), sysctl.Write))
	step("run dir", os.RemoveAll(o.RunDir))
	return errors.Join(errs...)
}

type proc struct {
	pid, ppid int
	exe       string
	cmdline   []string
}

func processes() []proc {
	entries, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p := proc{pid: pid}
		p.exe, _ = os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		p.exe = strings.TrimSuffix(p.exe, " (deleted)")
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil {
			p.cmdline = strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			// pid (comm) state ppid ...; comm may hold spaces.
			if i := bytes.LastIndexByte(b, ')'); i > 0 {
				f := strings.Fields(string(b[i+1:]))
				if len(f) > 1 {
					p.ppid, _ = strconv.Atoi(f[1])
				}
			}
		}
		out = append(out, p)
	}
	return out
}

// stopKasa stops running kasa servers and agents: SIGTERM, then SIGKILL.
func stopKasa(o Options) error {
	var pids []int
	for _, p := range processes() {
		if p.pid == o.Self || p.exe != o.KasaExe || len(p.cmdline) < 2 {
			continue
		}
		if p.cmdline[1] == "server" || p.cmdline[1] == "agent" {
			pids = append(pids, p.pid)
		}
	}
	return terminate(pids, 20*time.Second, o.Log)
}

// killUnder kills every process whose program lies under dir (containerd,
// the shims) and all their descendants (the pods), with SIGKILL: workloads
// are stopped, as asked.
func killUnder(dir string, o Options) error {
	all := processes()
	children := map[int][]int{}
	for _, p := range all {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	var roots []int
	for _, p := range all {
		if p.pid != o.Self && strings.HasPrefix(p.exe, dir+"/") {
			roots = append(roots, p.pid)
		}
	}
	var victims []int
	var walk func(int)
	walk = func(pid int) {
		if slices.Contains(victims, pid) {
			return
		}
		victims = append(victims, pid)
		for _, c := range children[pid] {
			walk(c)
		}
	}
	for _, r := range roots {
		walk(r)
	}
	for _, pid := range victims {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return waitGone(victims, 10*time.Second)
}

func terminate(pids []int, timeout time.Duration, log *slog.Logger) error {
	for _, pid := range pids {
		log.Info("stopping kasa", "pid", pid)
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	if waitGone(pids, timeout) == nil {
		return nil
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return waitGone(pids, 5*time.Second)
}

func waitGone(pids []int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var alive []int
		for _, pid := range pids {
			if syscall.Kill(pid, 0) == nil && !zombie(pid) {
				alive = append(alive, pid)
			}
		}
		if len(alive) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes still running: %v", alive)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && len(b) > i+2 && b[i+2] == 'Z'
}

// unmountAll unmounts, deepest first, everything under the data dir and the
// run dir, the pods' network namespaces and the kubelet's pod mounts.
func unmountAll(o Options) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	prefixes := []string{o.DataDir + "/", o.RunDir + "/", "/run/netns/cni-", "/var/lib/kubelet/pods/"}
	var points []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescape(fields[4])
		for _, pre := range prefixes {
			if strings.HasPrefix(mp, pre) || mp+"/" == pre {
				points = append(points, mp)
				break
			}
		}
	}
	// Deepest first: a longer path is never the parent of a shorter one.
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range slices.Compact(points) {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
		}
	}
	if entries, err := filepath.Glob("/run/netns/cni-*"); err == nil {
		for _, e := range entries {
			_ = os.Remove(e)
		}
	}
	return errors.Join(errs...)
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// deleteInterfaces removes the bridge, flannel's devices and the pods'
// veths (those enslaved to the bridge).
func deleteInterfaces() error {
	links, err := listLinks()
	if err != nil {
		return err
	}
	bridge := -1
	for _, l := range links {
		if l.Attrs().Name == "cni0" {
			bridge = l.Attrs().Index
		}
	}
	// The pods' veths first, then the devices they hang on. A veth may go
	// by itself when its pod's namespace goes; that is no error.
	var veths, devices []netlink.Link
	for _, l := range links {
		a := l.Attrs()
		switch {
		case bridge > 0 && a.MasterIndex == bridge && l.Type() == "veth":
			veths = append(veths, l)
		case a.Name == "cni0" || a.Name == "flannel.1" || a.Name == "flannel-v6.1" || a.Name == "flannel-wg":
			devices = append(devices, l)
		}
	}
	var errs []error
	for _, l := range append(veths, devices...) {
		if err := netlink.LinkDel(l); err != nil && !errors.Is(err, syscall.ENODEV) {
			errs = append(errs, fmt.Errorf("%s: %w", l.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}

// listLinks lists the network interfaces. The kernel interrupts a listing
// when interfaces come or go during it (the pods' veths go while their
// namespaces are torn down); such a listing is taken again.
func listLinks() ([]netlink.Link, error) {
	for try := 1; ; try++ {
		links, err := netlink.LinkList()
		if !errors.Is(err, netlink.ErrDumpInterrupted) || try == 10 {
			return links, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// OurChain reports whether an iptables chain belongs to Kubernetes, flannel
// or the CNI plugins.
func OurChain(name string) bool {
	for _, p := range []string{"KUBE-", "FLANNEL", "CNI-"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// FilterRules removes from iptables-save output every chain of ours and
// every rule that mentions one, and reports the tables left with nothing
// but empty built-in chains.
func FilterRules(save string) (kept string, emptyTables []string) {
	var out []string
	table := ""
	tableHasRules := false
	for _, line := range strings.Split(save, "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			table, tableHasRules = line[1:], false
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) == 0 || OurChain(f[0]) {
				continue
			}
			// Someone else's chain, or a built-in chain whose policy is
			// not the default: the table is in use.
			if len(f) > 1 && f[1] != "ACCEPT" {
				tableHasRules = true
			}
		case strings.HasPrefix(line, "-A "):
			if mentionsOurs(strings.Fields(line)) {
				continue
			}
			tableHasRules = true
		case line == "COMMIT":
			if !tableHasRules && table != "" {
				emptyTables = append(emptyTables, table)
			}
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n"), emptyTables
}

// mentionsOurs reports whether a rule names one of our chains anywhere
// (as its target, or in a comment or match).
func mentionsOurs(fields []string) bool {
	for _, f := range fields {
		if strings.Contains(f, "KUBE-") || strings.Contains(f, "FLANNEL") || strings.Contains(f, "CNI-") {
			return true
		}
	}
	return false
}

// cleanIptables applies FilterRules to IPv4 and IPv6, with both iptables
// back ends where present, and deletes nf_tables tables left empty.
func cleanIptables() error {
	var errs []error
	for _, family := range []struct{ save, restore, nft string }{
		{"iptables-save", "iptables-restore", "ip"},
		{"ip6tables-save", "ip6tables-restore", "ip6"},
		{"iptables-legacy-save", "iptables-legacy-restore", ""},
		{"ip6tables-legacy-save", "ip6tables-legacy-restore", ""},
	} {
		if _, err := exec.LookPath(family.save); err != nil {
			continue
		}
		out, err := exec.Command(family.save).Output()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", family.save, err))
			continue
		}
		if !strings.Contains(string(out), "KUBE-") && !strings.Contains(string(out), "FLANNEL") && !strings.Contains(string(out), "CNI-") {
			continue
		}
		kept, empty := FilterRules(string(out))
		cmd := exec.Command(family.restore)
		cmd.Stdin = strings.NewReader(kept)
		if b, err := cmd.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w: %s", family.restore, err, bytes.TrimSpace(b)))
			continue
		}
		if family.nft != "" && isNft(family.save) {
			for _, t := range empty {
				_ = exec.Command("nft", "delete", "table", family.nft, t).Run()
			}
		}
	}
	return errors.Join(errs...)
}

// OurIPSet reports whether an ipset is the network policy controller's
// (kube-router names its sets KUBE-SRC-, KUBE-DST-, with inet6: before
// them for IPv6).
func OurIPSet(name string) bool {
	name = strings.TrimPrefix(name, "inet6:")
	return strings.HasPrefix(name, "KUBE-SRC-") || strings.HasPrefix(name, "KUBE-DST-")
}

// destroyIPSets destroys the network policy controller's ipsets; the
// iptables rules that used them must be gone first.
func destroyIPSets() error {
	if _, err := exec.LookPath("ipset"); err != nil {
		return nil
	}
	out, err := exec.Command("ipset", "list", "-n").Output()
	if err != nil {
		return fmt.Errorf("ipset list: %w", err)
	}
	var errs []error
	for _, name := range strings.Fields(string(out)) {
		if !OurIPSet(name) {
			continue
		}
		if b, err := exec.Command("ipset", "destroy", name).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ipset destroy %s: %w: %s", name, err, bytes.TrimSpace(b)))
		}
	}
	return errors.Join(errs...)
}

func isNft(save string) bool {
	out, err := exec.Command(save, "--version").Output()
	return err == nil && strings.Contains(string(out), "nf_tables")
}

// removeCgroups removes the cgroups the kubelet and containerd made
// (kubepods, k8s.io) in every hierarchy, deepest first.
// rmdirCgroup removes an empty cgroup. A cgroup stays busy for a moment
// after its last process was reaped while the kernel finishes the exit of
// its threads, so EBUSY is retried for up to two seconds.
func rmdirCgroup(dir string) error {
	for i := 0; ; i++ {
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || i == 20 {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cgroupRoots are the mounted cgroup hierarchies: /sys/fs/cgroup and the
// folders in it.
func cgroupRoots() []string {
	roots := []string{"/sys/fs/cgroup"}
	if entries, err := os.ReadDir("/sys/fs/cgroup"); err == nil {
		for _, e := range entries {
			if e.IsDir() {
				roots = append(roots, filepath.Join("/sys/fs/cgroup", e.Name()))
			}
		}
	}
	return roots
}

// podCgroups lists, deepest first, the folders of the kubelet's cgroups
// (kubepods, and containerd's k8s.io) under each root.
func podCgroups(roots []string) []string {
	var dirs []string
	for _, r := range roots {
		for _, name := range []string{"kubepods", "kubepods.slice", "k8s.io"} {
			dir := filepath.Join(r, name)
			if _, err := os.Stat(dir); err != nil {
				continue
			}
			var tree []string
			_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					tree = append(tree, p)
				}
				return nil
			})
			slices.Reverse(tree)
			dirs = append(dirs, tree...)
		}
	}
	return dirs
}

// killPodCgroups kills, with SIGKILL, every process left in the pods'
// cgroups, and waits up to 10 s for them to go. Those are the containers
// whose shim is already gone (a service manager that killed kasa's whole
// unit, a crash), which killUnder cannot find by their parents.
func killPodCgroups(roots []string, self int) error {
	dirs := podCgroups(roots)
	procs := func() []int {
		var pids []int
		for _, d := range dirs {
			b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				pid, err := strconv.Atoi(f)
				if err != nil || pid == self || pid <= 1 || errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
					continue
				}
				pids = append(pids, pid)
			}
		}
		slices.Sort(pids)
		return slices.Compact(pids)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := procs()
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v are still in the pods' cgroups", pids)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func removeCgroups() error {
	var errs []error
	for _, dir := range podCgroups(cgroupRoots()) {
		if err := rmdirCgroup(dir); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}
