package catalog

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"helm.sh/helm/v3/pkg/action"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/resource"
)

// dryRun renders the release with the cluster's view (lookup works) and has
// the API server check every object (admission and validation included)
// without storing anything.
func (c *Client) dryRun(ctx context.Context, in *action.Install, o InstallOptions) (*Outcome, error) {
	in.DryRun, in.DryRunOption = true, "server"
	rel, err := in.RunWithContext(ctx, o.Chart, o.Values)
	if err != nil {
		if isValuesError(err) {
			return nil, valuesError(o.Chart.Metadata.Name, err)
		}
		return nil, fmt.Errorf("render %s: %w", o.Name, err)
	}
	out := &Outcome{Release: rel, Manifest: rel.Manifest}
	if _, err := c.kube.CoreV1().Namespaces().Get(ctx, o.Namespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		fmt.Fprintf(c.Out, "# namespace %s does not exist yet (install would create it): the objects were checked by the client only\n", o.Namespace)
		return out, nil
	}
	cfg, err := c.config(o.Namespace)
	if err != nil {
		return nil, err
	}
	infos, err := cfg.KubeClient.Build(bytes.NewBufferString(rel.Manifest), true)
	if err != nil {
		return nil, fmt.Errorf("the API server refuses %s's manifests: %w", o.Name, err)
	}
	var errs []error
	for _, info := range infos {
		helper := resource.NewHelper(info.Client, info.Mapping).DryRun(true).WithFieldValidation(metav1.FieldValidationStrict)
		if _, err := helper.Create(info.Namespace, true, info.Object); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", info.Mapping.GroupVersionKind.Kind, info.Name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("the API server refuses %s's manifests (dry run, nothing changed):\n%w", o.Name, err)
	}
	fmt.Fprintf(c.Out, "# %d objects checked by the API server (dry run, nothing changed)\n", len(infos))
	return out, nil
}
