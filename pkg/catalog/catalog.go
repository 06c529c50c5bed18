// Package catalog installs, upgrades and removes apps: the charts written
// for kasa (charts/) or any Helm chart, as ordinary Helm releases through
// the Helm SDK, against whatever cluster a kubeconfig names. It waits for
// an app to be ready while showing what is happening, and tells the user
// how to connect. The `kasa install` family of commands is a shell over it.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/strvals"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/kasa-io/kasa/charts"
	"github.com/kasa-io/kasa/pkg/helmclient"
)

// InstanceLabel carries the release's name on every object of a catalog
// chart (charts/README.md).
const InstanceLabel = "app.kubernetes.io/instance"

// Errors callers may test for.
var (
	ErrUnknownApp    = errors.New("unknown app")
	ErrExists        = errors.New("release exists")
	ErrNotFound      = errors.New("release not found")
	ErrUnreachable   = errors.New("cluster unreachable")
	ErrTimeout       = errors.New("not ready in time")
	ErrInvalidValues = errors.New("invalid values")
)

// Client runs catalog operations against one cluster.
type Client struct {
	Helm helmclient.Options
	// Out receives progress, notes and credentials.
	Out io.Writer
	// TTY redraws the progress block in place instead of printing lines.
	TTY bool
	// Source says where the kubeconfig came from, for messages.
	Source string

	kube kubernetes.Interface
}

// Connect checks that the cluster answers, and says plainly when it does not.
func (c *Client) Connect(ctx context.Context) error {
	rc, err := c.Helm.Getter("").ToRESTConfig()
	if err != nil {
		return fmt.Errorf("%w: %w (give --kubeconfig, or set KUBECONFIG)", ErrUnreachable, err)
	}
	rc.Timeout = 10 * time.Second
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	if _, err := kube.Discovery().ServerVersion(); err != nil {
		if rc.Host == "http://localhost:8080" && rc.BearerToken == "" && rc.CertFile == "" && len(rc.CertData) == 0 {
			return fmt.Errorf("%w: no kubeconfig found (%s): give --kubeconfig, set KUBECONFIG, or run as a user who can read kasa's admin kubeconfig (/etc/kasa/kasa.yaml)",
				ErrUnreachable, c.Source)
		}
		return fmt.Errorf("%w: the API server at %s does not answer (%s); is the cluster running? (kubeconfig: %s)",
			ErrUnreachable, rc.Host, shortError(err), c.Source)
	}
	rc.Timeout = 0
	c.kube, err = kubernetes.NewForConfig(rc)
	return err
}

func shortError(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i > 0 && strings.Contains(s, "dial tcp") {
		return s[i+2:]
	}
	return s
}

func (c *Client) config(namespace string) (*action.Configuration, error) {
	return c.Helm.Config(namespace)
}

// Apps lists the catalog.
func Apps() ([]charts.Info, error) { return charts.Catalog() }

// LoadApp loads a catalog app's chart, or says which names are close.
func LoadApp(name string) (*chart.Chart, error) {
	apps, err := charts.Catalog()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, a := range apps {
		names = append(names, a.Name)
	}
	if !slices.Contains(names, name) {
		msg := fmt.Sprintf("%q is not in the catalog", name)
		if near := closest(name, names); len(near) > 0 {
			msg += "; did you mean " + strings.Join(near, " or ") + "?"
		}
		return nil, fmt.Errorf("%w: %s (`kasa apps` lists the catalog; `kasa install chart PATH` installs any chart)", ErrUnknownApp, msg)
	}
	return charts.Load(name)
}

// LoadChartRef loads any chart: a directory, an archive, or a URL.
func LoadChartRef(ref, version string) (*chart.Chart, error) {
	if _, err := os.Stat(ref); err == nil {
		return loader.Load(ref)
	}
	if !strings.Contains(ref, "://") {
		return nil, fmt.Errorf("chart %s: no such file or directory, and not a URL", ref)
	}
	settings := cli.New()
	dir, err := os.MkdirTemp("", "kasa-chart-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	settings.RepositoryCache = dir
	opts := action.ChartPathOptions{Version: version}
	path, err := opts.LocateChart(ref, settings)
	if err != nil {
		return nil, fmt.Errorf("chart %s: %w", ref, err)
	}
	return loader.Load(path)
}

// closest returns the names within a small edit distance of name, or that
// start with it.
func closest(name string, names []string) []string {
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, name) || strings.HasPrefix(name, n) || distance(name, n) <= max(2, len(n)/3) {
			out = append(out, n)
		}
	}
	return out
}

// distance is the Levenshtein distance.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// ValueOptions are the user's values: files, then --set entries, then the
// ingress host.
type ValueOptions struct {
	Files       []string
	Set         []string
	IngressHost string
}

// Values merges the user's values for chart ch.
func (v ValueOptions) Values(ch *chart.Chart) (map[string]any, error) {
	vals := map[string]any{}
	for _, f := range v.Files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidValues, err)
		}
		layer := map[string]any{}
		if err := yaml.Unmarshal(data, &layer); err != nil {
			return nil, fmt.Errorf("%w: %s is not valid YAML: %w", ErrInvalidValues, f, err)
		}
		vals = helmclient.MergeValues(vals, layer)
	}
	for _, s := range v.Set {
		if err := strvals.ParseInto(s, vals); err != nil {
			return nil, fmt.Errorf("%w: --set %s: %w", ErrInvalidValues, s, err)
		}
	}
	if v.IngressHost != "" {
		if ch.Metadata.Annotations[charts.HTTPAnnotation] != "true" {
			return nil, fmt.Errorf("%w: --ingress-host: %s does not serve HTTP", ErrInvalidValues, ch.Metadata.Name)
		}
		vals = helmclient.MergeValues(vals, map[string]any{"ingress": map[string]any{"host": v.IngressHost}})
	}
	return vals, nil
}
