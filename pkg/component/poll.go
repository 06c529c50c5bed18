package component

import (
	"context"
	"errors"
	"time"
)

// PollReady calls check every interval until it returns nil (then nil), the
// component's own goroutine ends first (done: its error, or one saying it
// exited), or ctx is cancelled (nil: the caller is stopping anyway). A nil
// check is ready at once; a nil done never ends.
func PollReady(ctx context.Context, interval time.Duration, check func(context.Context) error, done <-chan error) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if check == nil || check(ctx) == nil {
			return nil
		}
		select {
		case err := <-done:
			if err == nil {
				err = errors.New("exited before it was ready")
			}
			return err
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Periodic runs pass once, calls ready, then runs pass every interval (5 s
// when zero) until ctx is cancelled: the shape of kasa's folder watchers.
func Periodic(ctx context.Context, interval time.Duration, ready func(), pass func()) {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	pass()
	ready()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pass()
		}
	}
}
