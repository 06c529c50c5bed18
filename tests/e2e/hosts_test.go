//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kasa-io/kasa/tests/harness"
	"github.com/kasa-io/kasa/tests/harness/hosts"
)

// hostsNetwork is the network of TestE2EHosts; Cleanup of this prefix at
// the start removes what a killed run left.
const hostsNetwork = hosts.Prefix + "e2e-hosts"

// inHostDataDir is kasa's data dir in the host. Not the default
// /var/lib/kasa: this machine sees a host's processes with the paths they
// have in the host, and `kasa killall` for /var/lib/kasa on the machine
// (TestE2EReadmeTour) would take the host's containerd for its own.
const inHostDataDir = "/var/lib/kasa-host"

// TestE2EHosts: the multi-node harness. Two hosts on one network have
// their own addresses and file systems and reach each other and this
// machine; the real kasa runs a Ready node in one of them; a host stopped
// and started again keeps its file system and address; and at the end
// nothing of the harness is left on the machine: no container, volume or
// network, no interface, no iptables rule of the network, the kernel
// settings and cgroup mounts as they were.
func TestE2EHosts(t *testing.T) {
	bin := prepareHosts(t, hostsNetwork)
	ctx := context.Background()
	before := snapshotMachine(t)

	nw, err := hosts.NewNetwork(hostsNetwork, hosts.DefaultSubnet)
	if err != nil {
		t.Fatal(err)
	}
	nw.Logf = t.Logf
	var ourVeths []string
	var a *hosts.Host
	// KASA_E2E_KEEP_HOSTS=1 keeps the hosts of a failed run for a look
	// (docker exec -it kasa-test-e2e-hosts-a bash); the next run removes them.
	keep := func() bool { return t.Failed() && os.Getenv("KASA_E2E_KEEP_HOSTS") != "" }
	t.Cleanup(func() {
		if !keep() {
			checkMachineClean(t, before, nw, ourVeths)
		}
	})
	t.Cleanup(func() {
		if keep() {
			t.Logf("KASA_E2E_KEEP_HOSTS: the hosts %v stay; the next run of the test removes them", nw.Hosts())
			return
		}
		if a != nil {
			if t.Failed() {
				t.Logf("kasa's journal in host a (tail):\n%s", a.Journal(ctx, "kasa", 60))
			}
			killallIn(t, a)
		}
		if err := nw.Close(); err != nil {
			t.Errorf("close the network: %v", err)
		}
	})

	started := time.Now()
	a, err = nw.StartHost(ctx, "a", hosts.HostOptions{Files: map[string]string{"/usr/local/bin/kasa": bin}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("host a up with the %d MB kasa binary copied in, %s after StartHost", fileMB(bin), time.Since(started).Round(100*time.Millisecond))
	// An address that Docker holds though no host of the network has it
	// (here a container started behind the harness's back; in CI, once,
	// Docker's own stale state): the next host moves on to another one.
	squatter := nw.Name + "-squatter"
	t.Cleanup(func() { _ = exec.Command("docker", "container", "rm", "--force", squatter).Run() })
	if out, err := exec.Command("docker", "container", "run", "--detach", "--name", squatter,
		"--network", nw.Name, "--ip", hostAfter(t, a.IP), "--label", hosts.Label+"=1",
		"--entrypoint", "sleep", nw.Image, "infinity").CombinedOutput(); err != nil {
		t.Fatalf("start a container at %s: %v\n%s", hostAfter(t, a.IP), err, out)
	}
	b, err := nw.StartHost(ctx, "b", hosts.HostOptions{Env: []string{"KASA_TEST_GREETING=hello"}})
	if err != nil {
		t.Fatal(err)
	}
	if b.IP == hostAfter(t, a.IP) {
		t.Errorf("host b has %s, the address of the other container", b.IP)
	}
	if out, err := exec.Command("docker", "container", "rm", "--force", squatter).CombinedOutput(); err != nil {
		t.Fatalf("remove %s: %v\n%s", squatter, err, out)
	}
	ourVeths = vethsOn(t, nw.Bridge)
	if len(ourVeths) != 2 {
		t.Errorf("veths on %s: %v, want one per host", nw.Bridge, ourVeths)
	}
	checkCgroupMounts(t, before.cgroupMounts, "with two hosts running")

	// Distinct addresses, each the host's own.
	if a.IP == b.IP {
		t.Fatalf("both hosts have %s", a.IP)
	}
	for _, h := range []*hosts.Host{a, b} {
		out := mustExec(t, h, "ip", "-4", "-o", "addr", "show", "eth0")
		if !strings.Contains(out, " "+h.IP+"/") {
			t.Errorf("host %s: eth0 has not %s:\n%s", h.Name, h.IP, out)
		}
		if name := strings.TrimSpace(mustExec(t, h, "hostname")); name != h.Name {
			t.Errorf("host %s calls itself %q", h.Name, name)
		}
	}
	if out := mustExec(t, b, "sh", "-c", "echo $KASA_TEST_GREETING; systemctl show-environment"); !strings.HasPrefix(out, "hello\n") || !strings.Contains(out, "KASA_TEST_GREETING=hello") {
		t.Errorf("host b's Env is not set for exec and systemd:\n%s", out)
	}

	// Own file systems: the root and the /var/lib volume.
	mustExec(t, a, "sh", "-c", "echo a > /root/only-in-a && echo a > /var/lib/only-in-a")
	for _, p := range []string{"/root/only-in-a", "/var/lib/only-in-a"} {
		if _, _, err := b.Exec(ctx, "test", "-e", p); err == nil {
			t.Errorf("%s, written in host a, exists in host b", p)
		}
		if out := mustExec(t, a, "cat", p); out != "a\n" {
			t.Errorf("host a: %s holds %q", p, out)
		}
	}

	// The hosts reach each other (ICMP, TCP to sshd, by name), and their
	// SSH host keys differ.
	keys := map[string]string{}
	for _, pair := range [][2]*hosts.Host{{a, b}, {b, a}} {
		from, to := pair[0], pair[1]
		mustExec(t, from, "ping", "-c", "1", "-W", "2", to.IP)
		if out := mustExec(t, from, "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/22 && head -c 4 <&3", to.IP)); out != "SSH-" {
			t.Errorf("host %s -> %s:22 said %q", from.Name, to.IP, out)
		}
		if out := mustExec(t, from, "getent", "hosts", to.Name); !strings.HasPrefix(out, to.IP+" ") {
			t.Errorf("host %s resolves %s to %q", from.Name, to.Name, out)
		}
		out := mustExec(t, from, "ssh-keyscan", "-T", "5", "-t", "ed25519", to.IP)
		f := strings.Fields(out)
		if len(f) != 3 {
			t.Fatalf("host %s: ssh-keyscan %s: %q", from.Name, to.IP, out)
		}
		keys[to.Name] = f[2]
	}
	if keys["a"] == keys["b"] {
		t.Error("hosts a and b have the same SSH host key")
	}
	// This machine reaches both.
	for _, h := range []*hosts.Host{a, b} {
		if banner, err := sshBanner(h.IP); err != nil || !strings.HasPrefix(banner, "SSH-2.0-") {
			t.Errorf("this machine -> %s:22: %q %v", h.IP, banner, err)
		}
	}

	// A kasa node in host a: Ready, with CoreDNS available (a pod that
	// runs in the nested containerd and reaches the API through
	// kube-proxy's service rules over flannel's pod network).
	started = time.Now()
	mustExec(t, a, "systemd-run", "--unit", "kasa", "--description", "kasa server",
		"/usr/local/bin/kasa", "server",
		"--data-dir", inHostDataDir,
		"--write-kubeconfig-mode", "0600",
		"--resolv-conf", hosts.PodResolvConf)
	waitFor(t, 4*time.Minute, "node a Ready in host a", func() error {
		out, stderr, err := a.Exec(ctx, "kasa", "kubectl", "get", "nodes", "--no-headers", "-o", "wide")
		if err != nil {
			return fmt.Errorf("%w %s", err, stderr)
		}
		f := strings.Fields(out)
		if len(f) < 6 || f[0] != "a" || f[1] != "Ready" {
			return fmt.Errorf("nodes: %q", out)
		}
		if f[5] != a.IP {
			t.Fatalf("node a has internal IP %s, not the host's %s", f[5], a.IP)
		}
		return nil
	})
	t.Logf("kasa node Ready in host a %s after systemd-run", time.Since(started).Round(100*time.Millisecond))
	waitFor(t, 3*time.Minute, "CoreDNS available in host a", func() error {
		out, stderr, err := a.Exec(ctx, "kasa", "kubectl", "-n", "kube-system", "get", "deployment", "coredns",
			"-o", "jsonpath={.status.availableReplicas}")
		if err != nil {
			return fmt.Errorf("%w %s", err, stderr)
		}
		if strings.TrimSpace(out) != "1" {
			return fmt.Errorf("available replicas %q", out)
		}
		return nil
	})
	t.Logf("CoreDNS available in host a %s after systemd-run", time.Since(started).Round(100*time.Millisecond))
	if out := mustExec(t, a, "stat", "-c", "%a", hosts.AdminKubeconfig); strings.TrimSpace(out) != "600" {
		t.Errorf("the kubeconfig's mode is %s", out)
	}
	checkCgroupMounts(t, before.cgroupMounts, "with a kasa node in a host")

	// Host b goes down and comes back: the same address, its root and
	// volume kept, /run fresh.
	mustExec(t, b, "sh", "-c", "echo b > /root/kept && echo b > /var/lib/kept && echo b > /run/gone")
	started = time.Now()
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("host b stopped in %s", time.Since(started).Round(100*time.Millisecond))
	if running, err := b.Running(ctx); err != nil || running {
		t.Fatalf("host b still running after Stop: %v %v", running, err)
	}
	if _, _, err := a.Exec(ctx, "ping", "-c", "1", "-W", "1", b.IP); err == nil {
		t.Error("host a still reaches host b's address while b is down")
	}
	started = time.Now()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("host b started again in %s", time.Since(started).Round(100*time.Millisecond))
	for _, p := range []string{"/root/kept", "/var/lib/kept"} {
		if out := mustExec(t, b, "cat", p); out != "b\n" {
			t.Errorf("host b: %s holds %q after the restart", p, out)
		}
	}
	if _, _, err := b.Exec(ctx, "test", "-e", "/run/gone"); err == nil {
		t.Error("host b: /run/gone survived the restart")
	}
	mustExec(t, a, "ping", "-c", "1", "-W", "2", b.IP)
	if banner, err := sshBanner(b.IP); err != nil || !strings.HasPrefix(banner, "SSH-2.0-") {
		t.Errorf("this machine -> %s:22 after the restart: %q %v", b.IP, banner, err)
	}
	if out := mustExec(t, b, "ssh-keyscan", "-T", "5", "-t", "ed25519", "127.0.0.1"); !strings.Contains(out, keys["b"]) {
		t.Error("host b's SSH host key changed across the restart")
	}
}

// prepareHosts checks what multi-host tests need (root, Docker, the
// binary), removes what a killed run of network left, and returns the
// binary's path.
func prepareHosts(t *testing.T, network string) string {
	t.Helper()
	requireRoot(t)
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	if err := hosts.Available(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := hosts.Cleanup(network); err != nil {
		t.Fatalf("remove a killed run's leftovers: %v", err)
	}
	return bin
}

// killallIn runs kasa killall in host h, which restores the kernel
// settings kasa recorded. killall sometimes finds a killed pod's cgroup
// still busy (the threads of a process whose leader is already a zombie are
// still exiting) and says so; a second run finds it empty.
func killallIn(t *testing.T, h *hosts.Host) {
	t.Helper()
	for try := 1; ; try++ {
		out, stderr, err := h.Exec(context.Background(), "kasa", "killall", "--data-dir", inHostDataDir)
		if err == nil {
			return
		}
		if try == 3 || !strings.Contains(stderr, "device or resource busy") {
			t.Errorf("kasa killall in host %s (try %d): %v\n%s%s", h.Name, try, err, out, stderr)
			return
		}
		t.Logf("kasa killall in host %s (try %d) found busy cgroups, trying again: %s", h.Name, try, lineWith(stderr, "busy"))
		time.Sleep(2 * time.Second)
	}
}

func mustExec(t *testing.T, h *hosts.Host, args ...string) string {
	t.Helper()
	out, stderr, err := h.Exec(context.Background(), args...)
	if err != nil {
		t.Fatalf("%v\n%s%s", err, out, stderr)
	}
	return out
}

func sshBanner(ip string) (string, error) {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "22"), 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(c, buf, 8)
	return strings.TrimSpace(string(buf[:n])), err
}

func fileMB(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size() >> 20
}

// machineState is what the harness must leave as it found it.
type machineState struct {
	links        []string
	sysctls      map[string]string
	cgroupMounts []string
}

func snapshotMachine(t *testing.T) machineState {
	t.Helper()
	return machineState{links: linkNames(t), sysctls: hosts.ReadSysctls(), cgroupMounts: cgroupMounts(t)}
}

func linkNames(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "-br", "link").Output()
	if err != nil {
		t.Fatalf("ip -br link: %v", err)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			name, _, _ := strings.Cut(f[0], "@")
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// vethsOn lists the interfaces enslaved to bridge: the hosts' veths.
func vethsOn(t *testing.T, bridge string) []string {
	t.Helper()
	out, err := exec.Command("ip", "-br", "link", "show", "master", bridge).Output()
	if err != nil {
		t.Fatalf("ip link show master %s: %v", bridge, err)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			name, _, _ := strings.Cut(f[0], "@")
			names = append(names, name)
		}
	}
	return names
}

// cgroupMounts are the machine's cgroup mounts with their options: a
// container's systemd must never remount them.
func cgroupMounts(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && strings.HasPrefix(f[4], "/sys/fs/cgroup") {
			out = append(out, f[4]+" "+f[5])
		}
	}
	return out
}

func checkCgroupMounts(t *testing.T, before []string, when string) {
	t.Helper()
	if after := cgroupMounts(t); !slices.Equal(before, after) {
		t.Errorf("the machine's cgroup mounts changed %s:\nbefore %v\nafter  %v", when, before, after)
	}
}

// checkMachineClean runs last: nothing of the network may remain.
func checkMachineClean(t *testing.T, before machineState, nw *hosts.Network, veths []string) {
	t.Helper()
	ctx := context.Background()
	if left, err := hosts.Leftovers(ctx, nw.Name); err != nil || len(left) > 0 {
		t.Errorf("left behind: %v %v", left, err)
		if err := hosts.Cleanup(nw.Name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}

	// Interfaces: the bridge and the hosts' veths are gone; anything else
	// new is reported (another kasa node on the machine explains cni0,
	// flannel.1 and their veths).
	after := linkNames(t)
	for _, name := range append([]string{nw.Bridge}, veths...) {
		if slices.Contains(after, name) {
			t.Errorf("interface %s is still there", name)
		}
	}
	for _, name := range after {
		if !slices.Contains(before.links, name) {
			t.Logf("interface %s appeared during the test (not the harness's: another kasa node on this machine?)", name)
		}
	}
	for _, name := range before.links {
		if !slices.Contains(after, name) {
			t.Errorf("interface %s disappeared during the test", name)
		}
	}

	// iptables: no rule of the network's bridge or subnet.
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		out, err := exec.Command(save).Output()
		if err != nil {
			t.Errorf("%s: %v", save, err)
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, nw.Bridge) || strings.Contains(line, nw.Subnet.String()) {
				t.Errorf("%s still shows: %s", save, line)
			}
		}
	}

	// Kernel settings: as before. A differing one is put back (this test's
	// hosts changed it, unless another kasa node started meanwhile).
	for _, line := range hosts.RestoreSysctls(before.sysctls) {
		t.Errorf("%s (kasa killall restores only the settings it records)", line)
	}
	checkCgroupMounts(t, before.cgroupMounts, "after the test")
}

// lineWith returns the first line of s that contains sub.
func lineWith(s, sub string) string {
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// hostAfter is the address after ip (an IPv4 address).
func hostAfter(t *testing.T, ip string) string {
	t.Helper()
	a, err := netip.ParseAddr(ip)
	if err != nil {
		t.Fatal(err)
	}
	return a.Next().String()
}
