package component

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func step(r *recorder, name string, err error) Step {
	return Step{Name: name, Run: func(context.Context) error {
		r.add(name)
		return err
	}}
}

func TestInitRunsStepsInOrder(t *testing.T) {
	r := &recorder{}
	m := &Manager{Log: quiet}
	if err := m.Init(context.Background(), []Step{step(r, "a", nil), step(r, "b", nil), step(r, "c", nil)}); err != nil {
		t.Fatal(err)
	}
	if got, want := r.String(), "a b c"; got != want {
		t.Fatalf("steps ran %q, want %q", got, want)
	}
}

func TestInitStopsAtTheFailedStepAndNamesIt(t *testing.T) {
	r := &recorder{}
	boom := errors.New("boom")
	m := &Manager{Log: quiet}
	err := m.Init(context.Background(), []Step{step(r, "a", nil), step(r, "host checks", boom), step(r, "c", nil)})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want one wrapping %v", err, boom)
	}
	if got, want := err.Error(), "host checks: boom"; got != want {
		t.Fatalf("error %q, want %q", got, want)
	}
	if got, want := r.String(), "a host checks"; got != want {
		t.Fatalf("steps ran %q, want %q (none after the failed one)", got, want)
	}
}

func TestInitNamesASlowStep(t *testing.T) {
	r := &recorder{}
	stepCtxDone := make(chan struct{})
	m := &Manager{Log: quiet, StepTimeout: 50 * time.Millisecond}
	err := m.Init(context.Background(), []Step{
		{Name: "unpack bundle", Run: func(ctx context.Context) error {
			<-ctx.Done()
			close(stepCtxDone)
			// A step that ignores its context a while longer.
			time.Sleep(200 * time.Millisecond)
			return nil
		}},
		step(r, "after", nil),
	})
	if !errors.Is(err, ErrStepTimeout) || !strings.HasPrefix(err.Error(), "unpack bundle: not done in time") {
		t.Fatalf("error %v, want the slow step named with ErrStepTimeout", err)
	}
	select {
	case <-stepCtxDone:
	case <-time.After(time.Second):
		t.Fatal("the slow step's context was not cancelled")
	}
	if r.String() != "" {
		t.Fatalf("steps after the slow one ran: %q", r)
	}
}

func TestInitCancelled(t *testing.T) {
	r := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{Log: quiet}
	err := m.Init(ctx, []Step{
		{Name: "a", Run: func(context.Context) error { cancel(); return nil }},
		step(r, "b", nil),
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if r.String() != "" {
		t.Fatalf("a step ran after the start was cancelled: %q", r)
	}

	// Cancelled during a step: the step's own error, named.
	ctx, cancel = context.WithCancel(context.Background())
	err = m.Init(ctx, []Step{{Name: "wait", Run: func(ctx context.Context) error {
		cancel()
		<-ctx.Done()
		return ctx.Err()
	}}})
	if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "wait: ") {
		t.Fatalf("error %v, want the step named with context.Canceled", err)
	}
}

func TestInitLogsEachStepsDurationAtDebug(t *testing.T) {
	var buf bytes.Buffer
	m := &Manager{Log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if err := m.Init(context.Background(), []Step{step(&recorder{}, "certificates", nil), step(&recorder{}, "tokens", nil)}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"certificates", "tokens"} {
		if !strings.Contains(buf.String(), `msg="step done" step=`+name+" took=") {
			t.Errorf("no duration logged for step %s:\n%s", name, buf.String())
		}
	}

	// At info level (no --debug) the steps stay quiet.
	buf.Reset()
	m.Log = slog.New(slog.NewTextHandler(&buf, nil))
	if err := m.Init(context.Background(), []Step{step(&recorder{}, "certificates", nil)}); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Errorf("steps logged at info level:\n%s", buf.String())
	}
}

func TestInitStepTimeouts(t *testing.T) {
	slow := func(d time.Duration) func(context.Context) error {
		return func(ctx context.Context) error {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d):
				return nil
			}
		}
	}
	m := &Manager{Log: quiet, StepTimeout: 20 * time.Millisecond}
	// A step's own timeout replaces the Manager's; a negative one is none.
	if err := m.Init(context.Background(), []Step{
		{Name: "longer", Run: slow(100 * time.Millisecond), Timeout: time.Second},
		{Name: "unbounded", Run: slow(100 * time.Millisecond), Timeout: -1},
	}); err != nil {
		t.Fatal(err)
	}
	err := m.Init(context.Background(), []Step{{Name: "shorter", Run: slow(time.Second), Timeout: 10 * time.Millisecond}})
	if !errors.Is(err, ErrStepTimeout) || !strings.Contains(err.Error(), "waited 10ms") {
		t.Fatalf("error %v, want the step's own 10ms timeout", err)
	}
}

func TestInitSettingErrorsReadAsSuch(t *testing.T) {
	bad := errors.New("--token: the secret is too short")
	m := &Manager{Log: quiet}
	err := m.Init(context.Background(), []Step{step(&recorder{}, "check secrets", Setting(bad))})
	if !errors.Is(err, bad) || err.Error() != bad.Error() {
		t.Fatalf("error %q, want %q as it is", err, bad)
	}
	if Setting(nil) != nil {
		t.Fatal("Setting(nil) is not nil")
	}
}
