package agent

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/kasa-io/kasa/pkg/join"
)

// serversInterval is how often an agent reads the list of servers.
const serversInterval = 30 * time.Second

// serverWatcher keeps the load balancer's list of servers up to date with
// the cluster's (the endpoints of the kubernetes Service), and keeps it in
// the join state for the next start. The server the agent was started with
// stays in the list, as the last way in.
type serverWatcher struct {
	lb         *LoadBalancer
	given      string
	state      *State
	file       string
	kubeconfig string // an identity that may list EndpointSlices (kube-proxy's)
	log        *slog.Logger
}

func (w *serverWatcher) Name() string { return "server-list" }

func (w *serverWatcher) Run(ctx context.Context, ready func()) error {
	client, err := clientFor(w.kubeconfig)
	if err != nil {
		return err
	}
	ready()
	for {
		w.refresh(ctx, client)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(serversInterval):
		}
	}
}

func (w *serverWatcher) refresh(ctx context.Context, client kubernetes.Interface) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	servers, err := join.Servers(ctx, client)
	if err != nil || len(servers) == 0 {
		return // the load balancer logs unreachable servers itself
	}
	w.lb.SetServers(append(slices.Clone(servers), w.given))
	if !slices.Equal(servers, w.state.Servers) {
		w.state.Servers = servers
		if err := saveState(w.file, w.state); err != nil {
			w.log.Warn("cannot keep the list of servers", "err", err)
		}
	}
}
