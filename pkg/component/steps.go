package component

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Step is one start-up step that runs to its end before the components
// start: a lock, a host check, certificates, a file the components read.
// Steps are the lifecycle's init phase: a failed or slow step is named like
// a component is.
type Step struct {
	// Name identifies the step in logs and errors.
	Name string
	// Run does the step's work. Its context ends when the step's time is up
	// or the start is cancelled.
	Run func(ctx context.Context) error
	// Timeout bounds this step instead of the Manager's StepTimeout; a
	// negative one leaves it unbounded (a join that waits for its server).
	Timeout time.Duration
}

// ErrStepTimeout is wrapped by the error of a step that was not done in time.
var ErrStepTimeout = errors.New("not done in time")

// Setting marks a step's error as one about a setting the user gave, which
// it names ("--token: ..."): Init returns it as is, without the step's
// name, so that it reads like every other settings error. Setting(nil) is
// nil.
func Setting(err error) error {
	if err == nil {
		return nil
	}
	return settingError{err}
}

type settingError struct{ error }

func (e settingError) Unwrap() error { return e.error }

// DefaultStepTimeout bounds a step when the Manager sets no StepTimeout.
const DefaultStepTimeout = 2 * time.Minute

// Init runs the steps in order, each to its end, and stops at the first that
// fails, with an error that names it. A step that is not done within
// StepTimeout fails with ErrStepTimeout; Init returns without waiting for it
// (its context is cancelled). Each step's duration is logged at debug level.
// Init returns ctx's error, naming no step, when the start is cancelled
// between steps, and the step's error when it is cancelled during one.
func (m *Manager) Init(ctx context.Context, steps []Step) error {
	log := m.Log
	if log == nil {
		log = slog.Default()
	}
	timeout := m.StepTimeout
	if timeout <= 0 {
		timeout = DefaultStepTimeout
	}
	began := time.Now()
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		t := timeout
		if s.Timeout != 0 {
			t = s.Timeout
		}
		if err := runStep(ctx, s, t, log); err != nil {
			return err
		}
	}
	log.Debug("start-up steps done", "steps", len(steps), "took", time.Since(began).Round(time.Millisecond))
	return nil
}

func runStep(ctx context.Context, s Step, timeout time.Duration, log *slog.Logger) error {
	sctx, cancel := context.WithCancel(ctx)
	if timeout > 0 {
		sctx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	begin := time.Now()
	done := make(chan error, 1)
	go func() { done <- s.Run(sctx) }()
	select {
	case err := <-done:
		took := time.Since(begin).Round(time.Millisecond)
		if err != nil {
			log.Debug("step failed", "step", s.Name, "took", took)
			if se := (settingError{}); errors.As(err, &se) {
				return se.error
			}
			return fmt.Errorf("%s: %w", s.Name, err)
		}
		log.Debug("step done", "step", s.Name, "took", took)
		return nil
	case <-sctx.Done():
		if ctx.Err() != nil {
			// Cancelled from outside: give the step its say, briefly.
			select {
			case err := <-done:
				if err != nil {
					return fmt.Errorf("%s: %w", s.Name, err)
				}
				return ctx.Err()
			case <-time.After(time.Second):
				return ctx.Err()
			}
		}
		return fmt.Errorf("%s: %w (waited %s)", s.Name, ErrStepTimeout, timeout)
	}
}
