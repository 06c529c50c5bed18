// Package agent runs a node's parts: containerd (a supervised child), the
// kubelet and kube-proxy (in-process) and the pod network. `kasa server`
// runs them after its control plane; `kasa agent` will run them alone.
package agent

import (
	"context"
	"time"

	"github.com/kasa-io/kasa/pkg/component"
)

// pollReady polls ready every 250 ms; see component.PollReady.
func pollReady(ctx context.Context, ready func(context.Context) error, done <-chan error) error {
	return component.PollReady(ctx, 250*time.Millisecond, ready, done)
}
