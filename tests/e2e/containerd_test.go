//go:build e2e

package e2e

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kasa-io/kasa/pkg/agent/containerd"
	"github.com/kasa-io/kasa/pkg/agent/images"
	"github.com/kasa-io/kasa/pkg/bundle"
	"github.com/kasa-io/kasa/pkg/component"
	"github.com/kasa-io/kasa/tests/harness"
)

// TestE2EContainerdRunsAPod runs the bundled containerd with the
// configuration kasa writes, imports the pause image built from source, and
// starts a pod sandbox through the CRI with the bundled crictl: runc, the
// shim and restrict_oom_score_adj at work on this machine.
func TestE2EContainerdRunsAPod(t *testing.T) {
	requireRoot(t)
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.MkdirTemp("/var/tmp", "kasa-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	runDir, err := os.MkdirTemp("/run", "kasa-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unmountUnder(t, data)
		unmountUnder(t, runDir)
		os.RemoveAll(data)
		os.RemoveAll(runDir)
	})

	p, err := bundle.Find(bin)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := p.Unpack(data)
	if err != nil {
		t.Fatal(err)
	}
	binDir := filepath.Join(dir, "bin")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	out := &syncWriter{}
	cfg := containerd.Config{
		BinDir:              binDir,
		Root:                filepath.Join(data, "agent/containerd"),
		RunDir:              filepath.Join(runDir, "containerd"),
		ConfigDir:           filepath.Join(data, "agent/etc/containerd"),
		RegistryDir:         filepath.Join(data, "agent/etc/containerd/certs.d"),
		CNIConfDir:          filepath.Join(data, "agent/etc/cni/net.d"),
		RestrictOOMScoreAdj: true,
		Env:                 os.Environ(),
		Log:                 log,
		Output:              out,
	}
	proc, err := cfg.Process()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		m := &component.Manager{Log: log, ReadyTimeout: time.Minute}
		done <- m.Run(ctx, []component.Component{proc}, func() { close(ready) })
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("containerd stopped with %v", err)
		}
	}
	defer stop()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("containerd did not start: %v\n%s", err, out.String())
	case <-time.After(time.Minute):
		t.Fatalf("containerd not ready in a minute:\n%s", out.String())
	}

	im := images.Importer{Ctr: filepath.Join(binDir, "ctr"), Socket: cfg.Socket()}
	if err := im.Import(ctx, filepath.Join(dir, "images/pause.tar")); err != nil {
		t.Fatal(err)
	}
	refs, err := im.List(ctx)
	if err != nil || !strings.Contains(strings.Join(refs, " "), containerd.PauseImage) {
		t.Fatalf("images after import: %v %v", refs, err)
	}

	crictl := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(binDir, "crictl"), append([]string{"--runtime-endpoint", cfg.Endpoint(), "--image-endpoint", cfg.Endpoint()}, args...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("crictl %v: %v\n%s\ncontainerd:\n%s", args, err, stderr.String(), tail(out.String(), 30))
		}
		return strings.TrimSpace(string(b))
	}
	podJSON := filepath.Join(data, "pod.json")
	if err := os.WriteFile(podJSON, []byte(`{
  "metadata": {"name": "e2e-sandbox", "namespace": "default", "uid": "e2e-sandbox-uid", "attempt": 1},
  "linux": {"security_context": {"namespace_options": {"network": 2}}}
}`), 0o600); err != nil {
		t.Fatal(err)
	}
	id := crictl("runp", podJSON)
	state := crictl("inspectp", "-o", "go-template", "--template", "{{.status.state}}", id)
	if state != "SANDBOX_READY" {
		t.Fatalf("sandbox state %q", state)
	}
	// The sandbox is a real process: the pause binary, under runc.
	pid := crictl("inspectp", "-o", "go-template", "--template", "{{.info.pid}}", id)
	comm, err := os.ReadFile("/proc/" + pid + "/comm")
	if err != nil || strings.TrimSpace(string(comm)) != "pause" {
		t.Fatalf("sandbox pid %s runs %q (%v)", pid, comm, err)
	}
	crictl("stopp", id)
	crictl("rmp", id)
	stop()

	// Nothing of it keeps running.
	if pids := processesUnder(binDir); len(pids) > 0 {
		t.Fatalf("processes from the bundle still run: %v", pids)
	}
}

// processesUnder lists the pids whose executable lies under dir.
func processesUnder(dir string) []string {
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && strings.HasPrefix(exe, dir+"/") {
			pids = append(pids, e.Name()+":"+filepath.Base(exe))
		}
	}
	return pids
}

// unmountUnder unmounts every mount point below dir, deepest first.
func unmountUnder(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		if err := syscall.Unmount(points[i], syscall.MNT_DETACH); err != nil {
			t.Logf("unmount %s: %v", points[i], err)
		}
	}
}

// syncWriter collects a child's output; safe for concurrent use.
type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
