// Package supervisor runs a child process as a component: started, watched
// until ready, restarted with backoff when it dies, and stopped with SIGTERM
// (SIGKILL after a timeout) when its context ends.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"github.com/kasa-io/kasa/pkg/component"
)

// Process describes the child.
type Process struct {
	ComponentName string
	Path          string
	Args          []string
	// Env is the child's whole environment.
	Env []string
	Dir string
	// Output receives the child's stdout and stderr.
	Output io.Writer
	// Ready is polled until it returns nil once the child has started.
	Ready func(ctx context.Context) error
	// StopTimeout is how long the child has between SIGTERM and SIGKILL.
	StopTimeout time.Duration
	Log         *slog.Logger
}

var _ component.Component = (*Process)(nil)

// Name implements component.Component.
func (p *Process) Name() string { return p.ComponentName }

const (
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
	// A child that ran this long before dying starts its backoff over.
	stableAfter = time.Minute
)

// Run implements component.Component.
func (p *Process) Run(ctx context.Context, ready func()) error {
	log := p.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", p.ComponentName)
	backoff := minBackoff
	readyOnce := false
	for {
		started := time.Now()
		err := p.runOnce(ctx, func() {
			if !readyOnce {
				readyOnce = true
				ready()
			}
		}, log)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) > stableAfter {
			backoff = minBackoff
		}
		log.Warn("child process exited; restarting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// runOnce starts the child and returns when it exits or, after ctx ends,
// once it has been stopped.
func (p *Process) runOnce(ctx context.Context, ready func(), log *slog.Logger) error {
	// The kernel sends SIGTERM to the child when the thread that started it
	// ends; keep that thread for as long as the child runs, so the child
	// outlives nothing but kasa itself.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = p.Env
	cmd.Dir = p.Dir
	cmd.Stdout, cmd.Stderr = p.Output, p.Output
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Path, err)
	}
	log.Info("child process started", "pid", cmd.Process.Pid)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	readyCtx, cancelReady := context.WithCancel(ctx)
	defer cancelReady()
	readyDone := make(chan struct{})
	go func() {
		defer close(readyDone)
		for readyCtx.Err() == nil {
			if p.Ready == nil || p.Ready(readyCtx) == nil {
				ready()
				return
			}
			select {
			case <-readyCtx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	select {
	case err := <-exited:
		cancelReady()
		<-readyDone
		if err == nil {
			err = errors.New("exited with status 0")
		}
		return err
	case <-ctx.Done():
		cancelReady()
		<-readyDone
		return p.stop(cmd, exited, log)
	}
}

func (p *Process) stop(cmd *exec.Cmd, exited <-chan error, log *slog.Logger) error {
	timeout := p.StopTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		log.Info("child process stopped", "pid", cmd.Process.Pid)
		return err
	case <-time.After(timeout):
		log.Warn("child process did not stop in time; killing it", "pid", cmd.Process.Pid, "after", timeout)
		_ = cmd.Process.Signal(os.Kill)
		return <-exited
	}
}
