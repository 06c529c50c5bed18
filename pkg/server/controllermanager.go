package server

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/pflag"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	cmfeatures "k8s.io/controller-manager/pkg/features"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"

	"github.com/kasa-io/kasa/pkg/component"
)

// ControllerManager runs the upstream kube-controller-manager in this process.
type ControllerManager struct {
	Args []string
}

var _ component.Component = (*ControllerManager)(nil)

// Name implements component.Component.
func (c *ControllerManager) Name() string { return "kube-controller-manager" }

// Run implements component.Component. The component is ready once it runs;
// it takes its leader lease in the background, which after an unclean stop
// can take as long as the lease lasts.
func (c *ControllerManager) Run(ctx context.Context, ready func()) error {
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
		return fmt.Errorf("flags: %w (check --kube-controller-manager-arg)", err)
	}
	ready()
	if err := kcmapp.Run(ctx, cfg.Complete()); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}
