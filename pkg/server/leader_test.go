package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"k8s.io/client-go/tools/cache"
	"k8s.io/component-base/configz"
)

func shortReruns(t *testing.T) {
	first, most := rerunFirstWait, rerunMostWait
	rerunFirstWait, rerunMostWait = time.Millisecond, 4*time.Millisecond
	t.Cleanup(func() { rerunFirstWait, rerunMostWait = first, most })
}

// A run that loses its lease is followed by another, with a context of its
// own and its /configz entry free again; ready is passed on once.
func TestKeepLeadingRerunsAfterLostLease(t *testing.T) {
	shortReruns(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var runs, readies int
	var ctxs []context.Context
	err := keepLeading(ctx, nil, "kasa-test-leading", func() { readies++ }, func(rctx context.Context, ready func()) error {
		runs++
		ctxs = append(ctxs, rctx)
		if _, err := configz.New("kasa-test-leading"); err != nil {
			t.Errorf("run %d: %v", runs, err)
			cancel()
			return err
		}
		ready()
		switch runs {
		case 1, 2:
			return errLostLease
		case 3:
			return errors.New("port in use")
		}
		cancel()
		<-rctx.Done()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if runs != 4 || readies != 1 {
		t.Fatalf("runs %d, readies %d: want 4 runs and one ready", runs, readies)
	}
	for i, c := range ctxs {
		if c.Err() == nil {
			t.Errorf("run %d's context still lives", i+1)
		}
	}
}

// A first run that fails before it is ready ends the component with its
// error: its configuration never worked.
func TestKeepLeadingFirstRunError(t *testing.T) {
	shortReruns(t)
	bad := errors.New("flags: unknown flag --bogus")
	runs := 0
	err := keepLeading(context.Background(), nil, "kasa-test-first", func() { t.Error("ready called") }, func(context.Context, func()) error {
		runs++
		return bad
	})
	if !errors.Is(err, bad) || runs != 1 {
		t.Fatalf("got %v after %d runs, want %v after one", err, runs, bad)
	}
}

// A stop (the context ends) is not a lost lease: no run follows.
func TestKeepLeadingStops(t *testing.T) {
	shortReruns(t)
	ctx, cancel := context.WithCancel(context.Background())
	runs := 0
	err := keepLeading(ctx, nil, "kasa-test-stop", func() {}, func(rctx context.Context, ready func()) error {
		runs++
		ready()
		cancel()
		return errLostLease
	})
	if err != nil || runs != 1 {
		t.Fatalf("got %v after %d runs, want nil after one", err, runs)
	}
}

// freeInformerName frees a name that a failed run left held, and frees
// nothing else when the name is already free.
func TestFreeInformerName(t *testing.T) {
	defer cache.ResetInformerNamesForTesting()
	other, err := cache.NewInformerName("kasa-test-other")
	if err != nil {
		t.Fatal(err)
	}
	freeInformerName("kasa-test-free") // free already: the other stays held
	if _, err := cache.NewInformerName("kasa-test-other"); err == nil {
		t.Error("freeing a free name freed another")
	}
	if _, err := cache.NewInformerName("kasa-test-held"); err != nil {
		t.Fatal(err)
	}
	freeInformerName("kasa-test-held")
	if _, err := cache.NewInformerName("kasa-test-held"); err != nil {
		t.Errorf("a held name after freeInformerName: %v", err)
	}
	other.Release()
}
