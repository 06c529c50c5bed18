// Package agent runs a node's parts: containerd (a supervised child), the
// kubelet and kube-proxy (in-process) and the pod network. `kasa server`
// runs them after its control plane; `kasa agent` will run them alone.
package agent

import (
	"context"
	"errors"
	"time"
)

// pollReady polls ready every 250 ms until it returns nil, the component
// ends (done) or ctx is cancelled.
func pollReady(ctx context.Context, ready func(context.Context) error, done <-chan error) error {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		if ready == nil || ready(ctx) == nil {
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
