// Package component runs kasa's long-lived parts under one lifecycle.
//
// A Component runs until its context is cancelled and calls ready once it can
// serve. The Manager starts components in order, waiting for each to be ready
// before the next starts, and stops them in reverse order by cancelling their
// contexts. Cancelling the context is the only way to stop a component.
package component

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Component is one long-lived part of kasa.
type Component interface {
	// Name identifies the component in logs and errors.
	Name() string
	// Run does the component's work until ctx is cancelled; it calls ready
	// (at most once) when the component can serve. It returns nil after a
	// clean stop and an error when it fails.
	Run(ctx context.Context, ready func()) error
}

// Func adapts a name and a function to Component.
type Func struct {
	ComponentName string
	RunFunc       func(ctx context.Context, ready func()) error
}

var _ Component = Func{}

// Name implements Component.
func (f Func) Name() string { return f.ComponentName }

// Run implements Component.
func (f Func) Run(ctx context.Context, ready func()) error { return f.RunFunc(ctx, ready) }

// ErrNotReady is wrapped by the error of a component that was not ready in time.
var ErrNotReady = errors.New("not ready in time")

// Manager starts and stops components.
type Manager struct {
	// ReadyTimeout bounds the wait for each component's readiness.
	ReadyTimeout time.Duration
	// StopTimeout bounds the whole stop, all components together.
	StopTimeout time.Duration
	// StepTimeout bounds each start-up step of Init (DefaultStepTimeout
	// when zero).
	StepTimeout time.Duration
	Log         *slog.Logger
}

type running struct {
	c      Component
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// Run starts the components in order and returns when ctx is cancelled (nil)
// or when one of them fails (its error, naming it). Either way every started
// component is stopped, in reverse order, before Run returns. onReady, if not
// nil, is called once all components are ready.
func (m *Manager) Run(ctx context.Context, components []Component, onReady func()) error {
	log := m.Log
	if log == nil {
		log = slog.Default()
	}
	failed := make(chan *running, len(components))
	var started []*running
	var runErr error

	for _, c := range components {
		r, err := m.start(ctx, c, failed, log)
		if r != nil {
			started = append(started, r)
		}
		if err != nil || ctx.Err() != nil {
			runErr = err
			break
		}
	}
	if runErr == nil && ctx.Err() == nil {
		if onReady != nil {
			onReady()
		}
		select {
		case <-ctx.Done():
		case r := <-failed:
			runErr = fmt.Errorf("%s stopped: %w", r.c.Name(), errOrExit(r.err))
		}
	}
	if err := m.stopAll(started, log); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

func (m *Manager) start(ctx context.Context, c Component, failed chan *running, log *slog.Logger) (*running, error) {
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &running{c: c, cancel: cancel, done: make(chan struct{})}
	readyCh := make(chan struct{})
	var once sync.Once
	ready := func() { once.Do(func() { close(readyCh) }) }

	begin := time.Now()
	log.Info("starting", "component", c.Name())
	go func() {
		defer close(r.done)
		r.err = c.Run(cctx, ready)
		if cctx.Err() == nil {
			failed <- r
		}
	}()

	timeout := m.ReadyTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-readyCh:
		log.Info("ready", "component", c.Name(), "after", time.Since(begin).Round(time.Millisecond))
		return r, nil
	case <-r.done:
		// Drain the failure notice sent by the goroutine.
		<-failed
		return r, fmt.Errorf("%s: %w", c.Name(), errOrExit(r.err))
	case <-timer.C:
		return r, fmt.Errorf("%s: %w (waited %s)", c.Name(), ErrNotReady, timeout)
	case <-ctx.Done():
		return r, nil
	}
}

func (m *Manager) stopAll(started []*running, log *slog.Logger) error {
	timeout := m.StopTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var stuck []string
	for i := len(started) - 1; i >= 0; i-- {
		r := started[i]
		r.cancel()
		select {
		case <-r.done:
			if r.err != nil {
				log.Warn("stopped with error", "component", r.c.Name(), "err", r.err)
			} else {
				log.Info("stopped", "component", r.c.Name())
			}
		case <-deadline.C:
			stuck = append(stuck, r.c.Name())
			// Cancel the rest at once; there is no time left to wait.
			for j := i - 1; j >= 0; j-- {
				started[j].cancel()
				stuck = append(stuck, started[j].c.Name())
			}
			return fmt.Errorf("components did not stop within %s: %v", timeout, stuck)
		}
	}
	return nil
}

func errOrExit(err error) error {
	if err == nil {
		return errors.New("exited unexpectedly")
	}
	return err
}
