package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/pflag"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/klog/v2"
	schedapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	scheduleroptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"

	"github.com/kasa-io/kasa/pkg/component"
)

// Scheduler runs the upstream kube-scheduler in this process.
type Scheduler struct {
	Args []string
	Log  *slog.Logger
}

var _ component.Component = (*Scheduler)(nil)

// Name implements component.Component.
func (s *Scheduler) Name() string { return "kube-scheduler" }

// Run implements component.Component.
//
// Upstream's Run ends the process when leadership ends, even on a requested
// stop. So kasa holds the same lease (kube-system/kube-scheduler, with the
// durations the flags give) itself, with upstream's leader election library,
// and runs the scheduler without its own election while it leads. A lost
// lease ends one run, and the next stands for the lease again
// (keepLeading).
func (s *Scheduler) Run(ctx context.Context, ready func()) error {
	return keepLeading(ctx, s.Log, "componentconfig", ready, s.runOnce)
}

// runOnce is one run, with its own options, configuration and elector.
func (s *Scheduler) runOnce(ctx context.Context, ready func()) error {
	opts := scheduleroptions.NewOptions()
	fs := pflag.NewFlagSet("kube-scheduler", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, f := range opts.Flags.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(s.Args); err != nil {
		return fmt.Errorf("flags: %w (check --kube-scheduler-arg)", err)
	}
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	// Upstream's Run stops serving the port before it returns.
	defer closeListener(opts.SecureServing)
	cc, sched, err := schedapp.Setup(ctx, opts)
	if err != nil {
		return fmt.Errorf("setup: %w (check --kube-scheduler-arg)", err)
	}
	le := cc.LeaderElection
	if le == nil {
		ready()
		if err := schedapp.Run(ctx, cc, sched); err != nil && ctx.Err() == nil {
			return err
		}
		return nil
	}
	// Run the scheduler itself without election: kasa holds the lease.
	cc.LeaderElection = nil
	cc.ComponentConfig.LeaderElection.LeaderElect = false

	runErr := make(chan error, 1)
	leading := make(chan struct{})
	le.ReleaseOnCancel = true
	le.Callbacks = leaderelection.LeaderCallbacks{
		OnStartedLeading: func(lctx context.Context) {
			close(leading)
			klog.FromContext(ctx).Info("kube-scheduler took its leader lease")
			err := schedapp.Run(lctx, cc, sched)
			if lctx.Err() != nil {
				err = nil
			}
			runErr <- err
		},
		OnStoppedLeading: func() {},
	}
	elector, err := leaderelection.NewLeaderElector(*le)
	if err != nil {
		return err
	}
	ready()
	elector.Run(ctx)
	// elector.Run returns when the context ends or the lease is lost; the
	// scheduler, if it was running, stops with the lease's context.
	var schedErr error
	select {
	case <-leading:
		schedErr = <-runErr
	default:
	}
	switch {
	case ctx.Err() != nil:
		return nil
	case schedErr != nil:
		return schedErr
	default:
		return errLostLease
	}
}
