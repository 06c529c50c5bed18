package checkconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeHost builds a /proc and /sys tree with the given tweaks.
func fakeHost(t *testing.T, filesystems, swaps string, dirs ...string) Host {
	t.Helper()
	root := t.TempDir()
	write := func(p, s string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("/proc/filesystems", filesystems)
	write("/proc/swaps", swaps)
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return Host{Root: root, LookPath: func(p string) (string, error) { return "/usr/sbin/" + p, nil }}
}

const noSwap = "Filename\tType\tSize\tUsed\tPriority\n"

func TestHealthyHost(t *testing.T) {
	h := fakeHost(t, "nodev\tsysfs\nnodev\toverlay\n", noSwap, "/proc/sys/net/bridge", "/proc/sys/net/ipv4",
		"/proc/sys/net/netfilter", "/sys/module/ip_set",
		"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/devices")
	h.NFTables = func() error { return nil }
	res := Run(h)
	if err := Failed(res); err != nil {
		t.Fatalf("a healthy host failed: %v", err)
	}
	for _, r := range res {
		if r.Level != OK && r.Name != "cgroups" {
			t.Errorf("a healthy host: %+v", r)
		}
	}
	var cg Result
	for _, r := range res {
		if r.Name == "cgroups" {
			cg = r
		}
	}
	if cg.Level != Warn {
		t.Fatalf("cgroup v1 should warn, got %+v", cg)
	}
}

func TestMissingFeatures(t *testing.T) {
	h := fakeHost(t, "nodev\tsysfs\n", "Filename\tType\tSize\tUsed\tPriority\n/swapfile file 1024 0 -2\n", "/proc/sys/net/ipv4",
		"/sys/fs/cgroup")
	// cgroup v2 with only some controllers.
	if err := os.WriteFile(filepath.Join(h.Root, "/sys/fs/cgroup/cgroup.controllers"), []byte("cpu io\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.LookPath = func(string) (string, error) { return "", errors.New("not found") }
	h.NFTables = func() error { return errors.New("protocol not supported") }
	res := Run(h)
	err := Failed(res)
	if err == nil {
		t.Fatal("a broken host passed")
	}
	for _, want := range []string{"overlay", "modprobe br_netfilter", "memory, pids", "apt-get install iptables", "swapoff",
		"modprobe nf_conntrack", "CONFIG_NF_TABLES"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	// What only the network policy needs warns: --disable-network-policy
	// runs without it.
	for _, r := range res {
		if strings.HasSuffix(r.Name, "(network policy)") && (r.Level != Warn || !strings.Contains(r.Fix, "--disable-network-policy")) {
			t.Errorf("%+v, want a warning naming --disable-network-policy", r)
		}
	}
}
