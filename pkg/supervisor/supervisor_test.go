package supervisor

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRestartAndStop: a child that dies is started again; cancelling the
// context stops it with SIGTERM.
func TestRestartAndStop(t *testing.T) {
	dir := t.TempDir()
	starts := filepath.Join(dir, "starts")
	pids := filepath.Join(dir, "pids")
	p := &Process{
		ComponentName: "child",
		Path:          "/bin/sh",
		// Record each start, then wait; exit cleanly on SIGTERM.
		Args:   []string{"-c", `echo start >> "$1"; echo $$ > "$2"; trap 'exit 0' TERM; while :; do sleep 0.1; done`, "sh", starts, pids},
		Output: io.Discard,
		Ready: func(context.Context) error {
			_, err := os.Stat(pids)
			return err
		},
		StopTimeout: 5 * time.Second,
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	count := func() int {
		b, _ := os.ReadFile(starts)
		return strings.Count(string(b), "start")
	}
	if count() != 1 {
		t.Fatalf("%d starts", count())
	}
	b, _ := os.ReadFile(pids)
	var pid int
	for _, c := range strings.TrimSpace(string(b)) {
		pid = pid*10 + int(c-'0')
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for count() < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if count() != 2 {
		t.Fatalf("the killed child was not started again (%d starts)", count())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
