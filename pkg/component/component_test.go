package component

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.events, " ")
}

func part(r *recorder, name string) Component {
	return Func{ComponentName: name, RunFunc: func(ctx context.Context, ready func()) error {
		r.add("start:" + name)
		ready()
		<-ctx.Done()
		r.add("stop:" + name)
		return nil
	}}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestOrderAndReverseStop(t *testing.T) {
	r := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{Log: quiet}
	err := m.Run(ctx, []Component{part(r, "a"), part(r, "b"), part(r, "c")}, func() {
		r.add("ready")
		cancel()
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.String(), "start:a start:b start:c ready stop:c stop:b stop:a"; got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
}

func TestFailureDuringStartStopsTheStarted(t *testing.T) {
	r := &recorder{}
	bad := Func{ComponentName: "bad", RunFunc: func(context.Context, func()) error { return errors.New("boom") }}
	m := &Manager{Log: quiet}
	err := m.Run(context.Background(), []Component{part(r, "a"), bad, part(r, "c")}, nil)
	if err == nil || !strings.Contains(err.Error(), "bad: boom") {
		t.Fatalf("error %v should name the component and cause", err)
	}
	if got := r.String(); got != "start:a stop:a" {
		t.Fatalf("events %q", got)
	}
}

func TestFailureAfterReady(t *testing.T) {
	r := &recorder{}
	crash := make(chan struct{})
	flaky := Func{ComponentName: "flaky", RunFunc: func(ctx context.Context, ready func()) error {
		ready()
		select {
		case <-crash:
			return errors.New("crashed")
		case <-ctx.Done():
			return nil
		}
	}}
	m := &Manager{Log: quiet}
	err := m.Run(context.Background(), []Component{part(r, "a"), flaky}, func() { close(crash) })
	if err == nil || !strings.Contains(err.Error(), "flaky stopped: crashed") {
		t.Fatalf("got %v", err)
	}
	if got := r.String(); got != "start:a stop:a" {
		t.Fatalf("events %q", got)
	}
}

func TestReadyTimeout(t *testing.T) {
	never := Func{ComponentName: "slow", RunFunc: func(ctx context.Context, _ func()) error { <-ctx.Done(); return nil }}
	m := &Manager{Log: quiet, ReadyTimeout: 50 * time.Millisecond}
	err := m.Run(context.Background(), []Component{never}, nil)
	if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "slow") {
		t.Fatalf("got %v", err)
	}
}

func TestStopTimeout(t *testing.T) {
	stuck := Func{ComponentName: "stuck", RunFunc: func(ctx context.Context, ready func()) error {
		ready()
		<-ctx.Done()
		time.Sleep(time.Second)
		return nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{Log: quiet, StopTimeout: 50 * time.Millisecond}
	start := time.Now()
	err := m.Run(ctx, []Component{stuck}, cancel)
	if err == nil || !strings.Contains(err.Error(), "stuck") {
		t.Fatalf("got %v", err)
	}
	if time.Since(start) > 900*time.Millisecond {
		t.Fatal("Run waited for the stuck component beyond the stop timeout")
	}
}

func TestCancelDuringStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &recorder{}
	slow := Func{ComponentName: "slow", RunFunc: func(c context.Context, ready func()) error {
		cancel()
		<-c.Done()
		r.add("stop:slow")
		return nil
	}}
	m := &Manager{Log: quiet}
	if err := m.Run(ctx, []Component{slow, part(r, "never")}, func() { t.Error("onReady called") }); err != nil {
		t.Fatal(err)
	}
	if got := r.String(); got != "stop:slow" {
		t.Fatalf("events %q", got)
	}
}

func TestPollReady(t *testing.T) {
	calls := 0
	err := PollReady(context.Background(), time.Millisecond, func(context.Context) error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	}, nil)
	if err != nil || calls != 3 {
		t.Fatalf("err %v after %d calls", err, calls)
	}
	done := make(chan error, 1)
	done <- nil
	err = PollReady(context.Background(), time.Millisecond, func(context.Context) error { return errors.New("never") }, done)
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") {
		t.Fatalf("got %v", err)
	}
}

func TestPeriodic(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	passes, readyAt := 0, -1
	Periodic(ctx, time.Millisecond, func() { readyAt = passes }, func() {
		passes++
		if passes == 3 {
			cancel()
		}
	})
	if readyAt != 1 || passes != 3 {
		t.Fatalf("ready after pass %d, %d passes", readyAt, passes)
	}
}
