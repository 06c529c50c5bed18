package server

import (
	"context"
	"errors"
	"log/slog"
	"time"

	apiserveroptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/component-base/configz"
)

// errLostLease is returned by one run of a leader-elected component that
// lost its lease while the server went on: it could not renew the lease in
// time, mostly because the datastore did not answer.
var errLostLease = errors.New("lost its leader lease")

// errRestarted is returned by a run that was ended to start again with
// files that changed.
var errRestarted = errors.New("restarted")

// Back-off between runs of a component that lost its lease, doubled after
// each failed run (a port still held by the last run, an API server not
// answering yet) up to the most.
var (
	rerunFirstWait = 2 * time.Second
	rerunMostWait  = 10 * time.Second
)

// keepLeading runs a leader-elected component (the controller-manager, the
// scheduler) in this process until ctx ends. Upstream's binaries exit when
// they lose their lease, and a supervisor starts them again; kasa runs them
// in-process beside the API server and the node, so a lost lease (the
// datastore gone for longer than the renew deadline) ends only that run:
// the component stands for its lease again in a new run, with a fresh
// configuration (its informers and listener are not reusable), while the
// rest of the server keeps running.
//
// run is one run; it gets ready on the first run only, and returns
// errLostLease when the lease was lost while ctx lives. An error of the
// first run before it was ready ends keepLeading; a later run's error is
// logged and the run retried after a back-off, since the component ran
// with this configuration before.
func keepLeading(ctx context.Context, log *slog.Logger, configzName string, ready func(), run func(ctx context.Context, ready func()) error) error {
	if log == nil {
		log = slog.Default()
	}
	wasReady := false
	failWait := rerunFirstWait // after a failed run; doubled after each
	for {
		runCtx, cancel := context.WithCancel(ctx)
		err := run(runCtx, func() {
			if !wasReady {
				wasReady = true
				ready()
			}
		})
		// The run's listener and informers stop with its context.
		cancel()
		// Upstream registers its /configz entry once per run and refuses
		// a second.
		configz.Delete(configzName)
		wait := rerunFirstWait
		switch {
		case ctx.Err() != nil:
			return nil
		case !wasReady:
			return err
		case errors.Is(err, errRestarted):
			log.Info("starting again to read the files that changed", "after", wait)
		case errors.Is(err, errLostLease):
			failWait = rerunFirstWait
			log.Warn("lost its leader lease (the datastore or the API server did not answer in time); standing for it again", "after", wait)
		default:
			wait, failWait = failWait, min(2*failWait, rerunMostWait)
			log.Error("stopped; starting it again", "err", err, "after", wait)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// closeListener closes the secure port that a run's configuration opened
// and no server serves (it failed after the port was opened, or never led),
// for the next run to open again.
func closeListener(o *apiserveroptions.SecureServingOptions) {
	if o != nil && o.Listener != nil {
		_ = o.Listener.Close()
	}
}
