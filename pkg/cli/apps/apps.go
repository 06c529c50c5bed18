// Package apps holds the app catalog's commands: install, upgrade,
// uninstall, list, status, info and apps. Each binds its flags to options
// and calls pkg/catalog.
package apps

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"helm.sh/helm/v3/pkg/chart"

	"github.com/kasa-io/kasa/pkg/catalog"
	"github.com/kasa-io/kasa/pkg/cli/output"
	"github.com/kasa-io/kasa/pkg/helmclient"
	"github.com/kasa-io/kasa/pkg/kubeconfig"
)

// cluster are the flags that pick the cluster and namespace.
type cluster struct {
	kubeconfig, context, namespace string
}

func (c *cluster) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig file (default: KUBECONFIG, else kasa's admin kubeconfig when readable, else ~/.kube/config)")
	cmd.Flags().StringVar(&c.context, "context", "", "kubeconfig context (default: its current context)")
	cmd.Flags().StringVarP(&c.namespace, "namespace", "n", "default", "namespace of the release")
}

// client connects a catalog client to the cluster the flags name.
func (c *cluster) client(ctx context.Context, env kubeconfig.Env, out io.Writer) (*catalog.Client, error) {
	path, source := c.kubeconfig, "--kubeconfig "+c.kubeconfig
	if path == "" {
		if p, ok := kubeconfig.DefaultPath(env, nil); ok {
			path, source = p, p
		} else if env.KubeconfigSet {
			source = "KUBECONFIG=" + env.Kubeconfig
		} else {
			source = "~/.kube/config"
		}
	}
	cl := &catalog.Client{
		Helm:   helmclient.Options{Kubeconfig: path, Context: c.context},
		Out:    out,
		TTY:    isTerminal(out),
		Source: source,
	}
	if err := cl.Connect(ctx); err != nil {
		return nil, err
	}
	return cl, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// NewCommands returns the catalog's commands.
func NewCommands(env kubeconfig.Env) []*cobra.Command {
	return []*cobra.Command{
		newInstall(env), newUpgrade(env), newUninstall(env),
		newList(env), newStatus(env), newInfo(env), newApps(),
	}
}

// values are the flags that give values.
type values struct {
	files       []string
	set         []string
	ingressHost string
}

func (v *values) bind(cmd *cobra.Command) {
	cmd.Flags().StringArrayVarP(&v.files, "values", "f", nil, "values file (repeatable; later files win)")
	cmd.Flags().StringArrayVar(&v.set, "set", nil, "a value, key=value, as helm --set (repeatable; wins over files)")
	cmd.Flags().StringVar(&v.ingressHost, "ingress-host", "", "route this host name to the app through the ingress controller (HTTP apps)")
}

func (v *values) options() catalog.ValueOptions {
	return catalog.ValueOptions{Files: v.files, Set: v.set, IngressHost: v.ingressHost}
}

// waiting are the flags that say whether and how long to wait.
type waiting struct {
	wait, noWait bool
	timeout      time.Duration
}

func (w *waiting) bind(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&w.wait, "wait", true, "wait until the app is ready, showing progress")
	cmd.Flags().BoolVar(&w.noWait, "no-wait", false, "return once the objects are created")
	cmd.Flags().DurationVar(&w.timeout, "timeout", 5*time.Minute, "how long to wait")
}

func (w *waiting) enabled() bool { return w.wait && !w.noWait }

func newInstall(env kubeconfig.Env) *cobra.Command {
	var (
		cl      cluster
		vals    values
		wait    waiting
		version string
		dryRun  bool
	)
	cmd := &cobra.Command{
		Use:   "install APP [NAME]",
		Short: "Install an app from the catalog (`kasa apps`), or any chart: install chart PATH|URL [NAME]",
		Example: `  kasa install mysql
  kasa install postgresql db -n shop --set persistence.size=20Gi
  kasa install wordpress --ingress-host blog.example.com
  kasa install chart ./my-chart`,
		Args:              cobra.RangeArgs(1, 3),
		ValidArgsFunction: completeApps("chart"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			app, name, chartRef := args[0], args[0], ""
			rest := args[1:]
			if app == "chart" {
				if len(rest) == 0 {
					return fmt.Errorf("install chart needs a PATH or URL: kasa install chart ./my-chart [NAME]")
				}
				chartRef, rest = rest[0], rest[1:]
				name = ""
			}
			if len(rest) > 1 {
				return fmt.Errorf("too many arguments: install APP [NAME]")
			}
			if len(rest) == 1 {
				name = rest[0]
			}
			ch, err := loadChart(app, chartRef, version)
			if err != nil {
				return err
			}
			if name == "" {
				name = ch.Metadata.Name
			}
			v, err := vals.options().Values(ch)
			if err != nil {
				return err
			}
			c, err := cl.client(ctx, env, out)
			if err != nil {
				return err
			}
			o, err := c.Install(ctx, catalog.InstallOptions{
				Chart: ch, Name: name, Namespace: cl.namespace, Values: v,
				Wait: wait.enabled(), Timeout: wait.timeout, DryRun: dryRun,
			})
			if err != nil {
				return err
			}
			if dryRun {
				fmt.Fprintln(out, strings.TrimRight(o.Manifest, "\n"))
				return nil
			}
			return c.PrintConnection(ctx, o.Release)
		},
	}
	cl.bind(cmd)
	vals.bind(cmd)
	wait.bind(cmd)
	cmd.Flags().StringVar(&version, "version", "", "chart version (catalog apps: must match the embedded chart)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the manifests, checked by the API server, and change nothing")
	return cmd
}

func loadChart(app, ref, version string) (*chart.Chart, error) {
	if ref != "" {
		return catalog.LoadChartRef(ref, version)
	}
	ch, err := catalog.LoadApp(app)
	if err != nil {
		return nil, err
	}
	if version != "" && version != ch.Metadata.Version {
		return nil, fmt.Errorf("kasa's catalog has %s %s, not %s", app, ch.Metadata.Version, version)
	}
	return ch, nil
}

func newUpgrade(env kubeconfig.Env) *cobra.Command {
	var (
		cl       cluster
		vals     values
		wait     waiting
		chartRef string
	)
	cmd := &cobra.Command{
		Use:     "upgrade NAME",
		Short:   "Change an installed app: new values over its current ones; credentials are kept",
		Example: "  kasa upgrade mysql --set resources.requests.memory=512Mi",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := cl.client(ctx, env, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			o := catalog.UpgradeOptions{Name: args[0], Namespace: cl.namespace, Wait: wait.enabled(), Timeout: wait.timeout}
			if chartRef != "" {
				if o.Chart, err = catalog.LoadChartRef(chartRef, ""); err != nil {
					return err
				}
			} else if o.Chart, err = c.ChartOf(args[0], cl.namespace); err != nil {
				return err
			}
			if o.Values, err = vals.options().Values(o.Chart); err != nil {
				return err
			}
			_, err = c.Upgrade(ctx, o)
			return err
		},
		ValidArgsFunction: releaseNames(env, &cl),
	}
	cl.bind(cmd)
	vals.bind(cmd)
	wait.bind(cmd)
	cmd.Flags().StringVar(&chartRef, "chart", "", "the chart (PATH or URL) of a release not installed from the catalog")
	return cmd
}

func newUninstall(env kubeconfig.Env) *cobra.Command {
	var (
		cl    cluster
		purge bool
	)
	cmd := &cobra.Command{
		Use:   "uninstall NAME",
		Short: "Remove an installed app; its volumes and credentials are kept unless --purge",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cl.client(cmd.Context(), env, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			return c.Uninstall(cmd.Context(), args[0], cl.namespace, purge)
		},
		ValidArgsFunction: releaseNames(env, &cl),
	}
	cl.bind(cmd)
	cmd.Flags().BoolVar(&purge, "purge", false, "also delete the app's volume claims (and their data) and its credentials")
	return cmd
}

func newList(env kubeconfig.Env) *cobra.Command {
	var (
		cl     cluster
		format string
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the installed apps (every Helm release) in all namespaces",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cl.client(cmd.Context(), env, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			rels, err := c.List(cmd.Context())
			if err != nil {
				return err
			}
			return output.Print(cmd.OutOrStdout(), format, rels, func(w io.Writer) {
				fmt.Fprintln(w, "NAME\tNAMESPACE\tAPP\tVERSION\tREVISION\tSTATUS\tUPDATED")
				for _, r := range rels {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.Name, r.Namespace, r.App, r.AppVersion, r.Revision, r.Status, r.Updated.Local().Format(time.DateTime))
				}
			})
		},
	}
	cl.bind(cmd)
	output.Bind(cmd, &format)
	return cmd
}

func newStatus(env kubeconfig.Env) *cobra.Command {
	var (
		cl     cluster
		format string
	)
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show an installed app: its release and what its pods and volumes are doing",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cl.client(cmd.Context(), env, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			r, err := c.Status(cmd.Context(), args[0], cl.namespace)
			if err != nil {
				return err
			}
			return output.Print(cmd.OutOrStdout(), format, r, func(w io.Writer) {
				fmt.Fprintf(w, "NAME:\t%s\nNAMESPACE:\t%s\nAPP:\t%s (%s)\nREVISION:\t%d\nSTATUS:\t%s\nREADY:\t%v\nUPDATED:\t%s\n",
					r.Name, r.Namespace, r.App, r.Chart, r.Revision, r.Status, *r.Ready, r.Updated.Local().Format(time.DateTime))
				for _, o := range r.Objects {
					fmt.Fprintf(w, "  %s\n", o)
				}
			})
		},
		ValidArgsFunction: releaseNames(env, &cl),
	}
	cl.bind(cmd)
	output.Bind(cmd, &format)
	return cmd
}

func newInfo(env kubeconfig.Env) *cobra.Command {
	var cl cluster
	cmd := &cobra.Command{
		Use:   "info APP|NAME",
		Short: "How to connect to an installed app (with its credentials), or a catalog app's description and values",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			// An installed release by that name comes first.
			if c, err := cl.client(ctx, env, out); err == nil {
				if rel, err := c.Get(args[0], cl.namespace); err == nil {
					fmt.Fprintf(out, "%s in namespace %s: %s, revision %d, %s\n", rel.Name, rel.Namespace, rel.Chart.Metadata.Name, rel.Version, rel.Info.Status)
					return c.PrintConnection(ctx, rel)
				}
			}
			ch, err := catalog.LoadApp(args[0])
			if err != nil {
				return fmt.Errorf("no release %s in namespace %s, and %w", args[0], cl.namespace, err)
			}
			fmt.Fprintf(out, "%s %s (app version %s): %s\n\nValues (kasa install %s --set key=value, or -f values.yaml):\n\n",
				ch.Metadata.Name, ch.Metadata.Version, ch.Metadata.AppVersion, ch.Metadata.Description, ch.Metadata.Name)
			for _, f := range ch.Raw {
				if f.Name == "values.yaml" {
					fmt.Fprintf(out, "%s\n", f.Data)
				}
			}
			return nil
		},
		ValidArgsFunction: completeApps(),
	}
	cl.bind(cmd)
	return cmd
}

func newApps() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "apps",
		Short: "List the app catalog",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			apps, err := catalog.Apps()
			if err != nil {
				return err
			}
			return output.Print(cmd.OutOrStdout(), format, apps, func(w io.Writer) {
				fmt.Fprintln(w, "NAME\tVERSION\tDESCRIPTION")
				for _, a := range apps {
					fmt.Fprintf(w, "%s\t%s\t%s\n", a.Name, a.AppVersion, a.Description)
				}
			})
		},
	}
	output.Bind(cmd, &format)
	return cmd
}

// completeApps completes the first argument with the catalog's names and
// the extra words.
func completeApps(extra ...string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		apps, err := catalog.Apps()
		if len(args) > 0 || err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		names := make([]string, 0, len(apps)+len(extra))
		for _, a := range apps {
			names = append(names, a.Name)
		}
		return append(names, extra...), cobra.ShellCompDirectiveNoFileComp
	}
}

// releaseNames completes the first argument with the names of the
// releases in the cluster of the command's --kubeconfig (flags, bound to
// the command's own cluster flags, are parsed before completion).
func releaseNames(env kubeconfig.Env, flags *cluster) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		cl := cluster{kubeconfig: flags.kubeconfig}
		c, err := cl.client(cmd.Context(), env, io.Discard)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		rels, err := c.List(cmd.Context())
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		for _, r := range rels {
			names = append(names, r.Name)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}
