package catalog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kasa-io/kasa/charts"
)

// InstallOptions say what to install where.
type InstallOptions struct {
	Chart     *chart.Chart
	Name      string
	Namespace string
	Values    map[string]any
	// Wait for the app to be ready, up to Timeout.
	Wait    bool
	Timeout time.Duration
	// DryRun renders the manifests and checks them with the API server
	// without changing anything.
	DryRun bool
}

// Outcome is what an install or upgrade did.
type Outcome struct {
	Release *release.Release
	// Manifest is the rendered YAML (for a dry run).
	Manifest string
}

// Install installs a release, refusing a name in use, creating the
// namespace when needed, and removing what it created if the install
// fails before the app could start.
func (c *Client) Install(ctx context.Context, o InstallOptions) (*Outcome, error) {
	cfg, err := c.config(o.Namespace)
	if err != nil {
		return nil, err
	}
	if last, err := action.NewGet(cfg).Run(o.Name); err == nil {
		return nil, fmt.Errorf("%w: %s is already installed in namespace %s (%s, %s): change it with `kasa upgrade %s ...`, or give another name: `kasa install %s %s-2`",
			ErrExists, o.Name, o.Namespace, chartName(last.Chart), last.Info.Status, o.Name, o.Chart.Metadata.Name, o.Name)
	} else if !errors.Is(err, driver.ErrReleaseNotFound) {
		return nil, err
	}
	in := action.NewInstall(cfg)
	in.ReleaseName, in.Namespace, in.CreateNamespace = o.Name, o.Namespace, true
	in.Timeout = o.Timeout
	in.Description = "kasa install"
	if o.DryRun {
		return c.dryRun(ctx, in, o)
	}
	_, nsErr := c.kube.CoreV1().Namespaces().Get(ctx, o.Namespace, metav1.GetOptions{})
	newNamespace := apierrors.IsNotFound(nsErr)

	rel, err := in.RunWithContext(ctx, o.Chart, o.Values)
	if err != nil {
		return nil, c.undoInstall(ctx, cfg, o, newNamespace, err)
	}
	fmt.Fprintf(c.Out, "installed %s (%s) in namespace %s\n", o.Name, chartName(rel.Chart), o.Namespace)
	if o.Wait {
		if err := c.WaitReady(ctx, o.Namespace, o.Name, o.Timeout); err != nil {
			return &Outcome{Release: rel}, err
		}
	}
	return &Outcome{Release: rel}, nil
}

// undoInstall removes a failed install's release (and the namespace if the
// install made it), so that nothing half-created is left.
func (c *Client) undoInstall(ctx context.Context, cfg *action.Configuration, o InstallOptions, newNamespace bool, cause error) error {
	if isValuesError(cause) {
		return valuesError(o.Chart.Metadata.Name, cause)
	}
	what := "nothing was created"
	if _, err := action.NewGet(cfg).Run(o.Name); err == nil {
		un := action.NewUninstall(cfg)
		un.Timeout = time.Minute
		if _, err := un.Run(o.Name); err != nil {
			return fmt.Errorf("install of %s failed: %w; removing what it created failed too (%w): see `kasa status %s -n %s`",
				o.Name, cause, err, o.Name, o.Namespace)
		}
		what = "what it had created was removed"
	}
	if newNamespace {
		if err := c.kube.CoreV1().Namespaces().Delete(ctx, o.Namespace, metav1.DeleteOptions{}); err == nil {
			what += ", with the namespace " + o.Namespace
		}
	}
	return fmt.Errorf("install of %s failed: %w (%s)", o.Name, cause, what)
}

func isValuesError(err error) bool {
	return strings.Contains(err.Error(), "values don't meet the specifications of the schema")
}

// valuesError turns Helm's schema report (a header, the chart's name, then
// "- at 'PATH': WHAT" lines) into one line that says where to look.
func valuesError(chartName string, err error) error {
	var problems []string
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "- at '"); ok {
			path, what, _ := strings.Cut(rest, "': ")
			if path == "" {
				path = "(top level)"
			}
			problems = append(problems, path+": "+what)
		}
	}
	if len(problems) == 0 {
		return fmt.Errorf("%w: %w", ErrInvalidValues, err)
	}
	return fmt.Errorf("%w for %s: %s (`kasa info %s` lists its values)", ErrInvalidValues, chartName, strings.Join(problems, "; "), chartName)
}

// UpgradeOptions say how to change a release.
type UpgradeOptions struct {
	Name, Namespace string
	// Chart is the new chart: ChartOf gives the catalog app's chart of an
	// installed release.
	Chart   *chart.Chart
	Values  map[string]any
	Wait    bool
	Timeout time.Duration
}

// Upgrade changes a release: the new values are laid over the ones it has,
// and the generated credentials are kept (the charts reuse their Secret).
func (c *Client) Upgrade(ctx context.Context, o UpgradeOptions) (*Outcome, error) {
	cfg, err := c.config(o.Namespace)
	if err != nil {
		return nil, err
	}
	if _, err := c.Get(o.Name, o.Namespace); err != nil {
		return nil, err
	}
	ch := o.Chart
	up := action.NewUpgrade(cfg)
	up.Namespace, up.Timeout, up.ReuseValues = o.Namespace, o.Timeout, true
	up.Description = "kasa upgrade"
	up.MaxHistory = 10
	rel, err := up.RunWithContext(ctx, o.Name, ch, o.Values)
	if err != nil {
		if isValuesError(err) {
			return nil, fmt.Errorf("%w (the release is unchanged)", valuesError(ch.Metadata.Name, err))
		}
		return nil, fmt.Errorf("upgrade of %s failed: %w (see `kasa status %s -n %s`)", o.Name, err, o.Name, o.Namespace)
	}
	fmt.Fprintf(c.Out, "upgraded %s to revision %d (%s)\n", o.Name, rel.Version, chartName(rel.Chart))
	if o.Wait {
		if err := c.WaitReady(ctx, o.Namespace, o.Name, o.Timeout); err != nil {
			return &Outcome{Release: rel}, err
		}
	}
	return &Outcome{Release: rel}, nil
}

// Uninstall removes a release. Its volumes are kept unless purge is set.
func (c *Client) Uninstall(ctx context.Context, name, namespace string, purge bool) error {
	cfg, err := c.config(namespace)
	if err != nil {
		return err
	}
	un := action.NewUninstall(cfg)
	un.Timeout = 2 * time.Minute
	if _, err := un.Run(name); err != nil {
		if errors.Is(err, driver.ErrReleaseNotFound) {
			return fmt.Errorf("%w: no release %s in namespace %s (`kasa list` shows what is installed)", ErrNotFound, name, namespace)
		}
		return fmt.Errorf("uninstall of %s: %w", name, err)
	}
	fmt.Fprintf(c.Out, "uninstalled %s from namespace %s\n", name, namespace)
	pvcs, err := c.kube.CoreV1().PersistentVolumeClaims(namespace).List(ctx, metav1.ListOptions{LabelSelector: InstanceLabel + "=" + name})
	if err != nil {
		return err
	}
	// The charts keep their credentials Secret on uninstall, like the
	// volume, so a later install of the same name matches its data.
	secrets, err := c.kube.CoreV1().Secrets(namespace).List(ctx, metav1.ListOptions{LabelSelector: InstanceLabel + "=" + name + "," + charts.CredentialsLabel + "=true"})
	if err != nil {
		return err
	}
	for _, sec := range secrets.Items {
		if !purge {
			fmt.Fprintf(c.Out, "kept Secret %s (the credentials that match the data; --purge removes it)\n", sec.Name)
			continue
		}
		if err := c.kube.CoreV1().Secrets(namespace).Delete(ctx, sec.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		fmt.Fprintf(c.Out, "deleted Secret %s\n", sec.Name)
	}
	for _, pvc := range pvcs.Items {
		if !purge {
			fmt.Fprintf(c.Out, "kept volume claim %s (%s): its data stays for a later install of %s; `kasa uninstall %s --purge` or `kubectl delete pvc -n %s %s` removes it\n",
				pvc.Name, capacity(pvc), name, name, namespace, pvc.Name)
			continue
		}
		if err := c.kube.CoreV1().PersistentVolumeClaims(namespace).Delete(ctx, pvc.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		fmt.Fprintf(c.Out, "deleted volume claim %s and its data\n", pvc.Name)
	}
	return nil
}

func capacity(pvc corev1.PersistentVolumeClaim) string {
	if q, ok := pvc.Status.Capacity[corev1.ResourceStorage]; ok {
		return q.String()
	}
	return string(pvc.Status.Phase)
}

func chartName(ch *chart.Chart) string {
	if ch == nil || ch.Metadata == nil {
		return "?"
	}
	return ch.Metadata.Name + "-" + ch.Metadata.Version
}

// ChartOf returns the catalog chart an installed release was made from.
func (c *Client) ChartOf(name, namespace string) (*chart.Chart, error) {
	rel, err := c.Get(name, namespace)
	if err != nil {
		return nil, err
	}
	ch, err := LoadApp(rel.Chart.Metadata.Name)
	if err != nil {
		return nil, fmt.Errorf("%s was not installed from the catalog: give its chart with --chart (%w)", name, err)
	}
	return ch, nil
}
