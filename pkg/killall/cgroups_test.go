package killall

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestKillPodCgroups: processes listed in the pods' cgroups are killed
// even without a parent kasa knows (here a fake hierarchy whose
// cgroup.procs files list two sleeping children); others are left alone.
func TestKillPodCgroups(t *testing.T) {
	root := t.TempDir()
	start := func() *exec.Cmd {
		c := exec.Command("sleep", "60")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b, other := start(), start(), start()
	defer func() { _ = other.Process.Kill() }()
	exited := map[int]chan struct{}{}
	for _, c := range []*exec.Cmd{a, b, other} {
		ch := make(chan struct{})
		exited[c.Process.Pid] = ch
		go func() { _ = c.Wait(); close(ch) }()
	}
	write := func(dir string, pids ...int) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		var s string
		for _, p := range pids {
			s += strconv.Itoa(p) + "\n"
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "pids", "kubepods", "besteffort", "pod1"), a.Process.Pid)
	write(filepath.Join(root, "memory", "kubepods", "pod2", "c1"), b.Process.Pid, os.Getpid())
	write(filepath.Join(root, "memory", "elsewhere"), other.Process.Pid)

	if err := killPodCgroups([]string{filepath.Join(root, "pids"), filepath.Join(root, "memory")}, os.Getpid()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*exec.Cmd{a, b} {
		select {
		case <-exited[c.Process.Pid]:
		case <-time.After(5 * time.Second):
			t.Errorf("pid %d in a pod cgroup is still running", c.Process.Pid)
		}
	}
	select {
	case <-exited[other.Process.Pid]:
		t.Error("a process outside the pods' cgroups was killed")
	default:
	}
	dirs := podCgroups([]string{filepath.Join(root, "memory")})
	if len(dirs) != 3 || filepath.Base(dirs[0]) != "c1" || filepath.Base(dirs[2]) != "kubepods" {
		t.Errorf("podCgroups, deepest first: %v", dirs)
	}
}
