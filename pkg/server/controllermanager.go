package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/pflag"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/tools/cache"
	cmfeatures "k8s.io/controller-manager/pkg/features"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"

	"github.com/kasa-io/kasa/pkg/component"
)

// ControllerManager runs the upstream kube-controller-manager in this process.
type ControllerManager struct {
	Args []string
	Log  *slog.Logger
	// Restart ends the running run, and the next reads its files again:
	// upstream reads --root-ca-file, which it publishes to every
	// namespace as the kube-root-ca.crt ConfigMap, only at its start.
	Restart <-chan struct{}
}

var _ component.Component = (*ControllerManager)(nil)

// Name implements component.Component.
func (c *ControllerManager) Name() string { return "kube-controller-manager" }

// Run implements component.Component. The component is ready once it runs;
// it takes its leader lease in the background, which after an unclean stop
// can take as long as the lease lasts. A lost lease ends one run, and the
// next stands for the lease again (keepLeading).
func (c *ControllerManager) Run(ctx context.Context, ready func()) error {
	runs := 0
	return keepLeading(ctx, c.Log, kcmapp.ConfigzName, ready, func(ctx context.Context, ready func()) error {
		if runs++; runs > 1 {
			freeInformerName(kcmInformerName)
		}
		runCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		restarted := make(chan struct{})
		go func() {
			select {
			case <-c.Restart:
				close(restarted)
				cancel()
			case <-runCtx.Done():
			}
		}()
		err := c.runOnce(runCtx, ready)
		select {
		case <-restarted:
			return errRestarted
		default:
			return err
		}
	})
}

// kcmInformerName is the process-wide informer name that upstream's
// controller-manager reserves in each run.
const kcmInformerName = "kube-controller-manager"

// freeInformerName frees the informer name for the next run. Upstream
// frees it when its informers shut down, which a run that failed while
// building its controllers (the datastore gone) never reaches, and then
// every later run would be refused the name. client-go frees a name it did
// not hand out only by freeing all (the API server's "kube-apiserver" then
// loses its informer metrics), so that is done only when the name is
// still held.
func freeInformerName(name string) {
	if n, err := cache.NewInformerName(name); err == nil {
		n.Release()
		return
	}
	cache.ResetInformerNamesForTesting()
}

// runOnce is one run, with its own options and configuration.
func (c *ControllerManager) runOnce(ctx context.Context, ready func()) error {
	// Upstream exits the process when it loses its lease, unless told to
	// release the lease and return when its context ends: kasa stops it by
	// cancelling that context, so it must return.
	if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(map[string]bool{
		string(cmfeatures.ControllerManagerReleaseLeaderElectionLockOnExit): true,
	}); err != nil {
		return err
	}
	s, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return err
	}
	known, disabled, aliases := kcmapp.KnownControllers(), kcmapp.ControllersDisabledByDefault(), kcmapp.ControllerAliases()
	named := s.Flags(known, disabled, aliases)
	s.ParsedFlags = &named
	fs := pflag.NewFlagSet("kube-controller-manager", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, f := range named.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(c.Args); err != nil {
		return fmt.Errorf("flags: %w (check --kube-controller-manager-arg)", err)
	}
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	cfg, err := s.Config(ctx, known, disabled, aliases)
	if err != nil {
		// Upstream's Run serves the port and closes it when ctx ends (an
		// early close would panic it); a failed configuration leaves it
		// open.
		closeListener(s.SecureServing)
		return fmt.Errorf("flags: %w (check --kube-controller-manager-arg)", err)
	}
	ready()
	// With the release on exit, upstream's Run returns, without an error,
	// when the lease is lost.
	err = kcmapp.Run(ctx, cfg.Complete())
	switch {
	case ctx.Err() != nil:
		return nil
	case err != nil:
		return err
	default:
		return errLostLease
	}
}
