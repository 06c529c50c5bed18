package helmcontroller

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	"helm.sh/helm/v3/pkg/strvals"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/kasa-io/kasa/charts"
	"github.com/kasa-io/kasa/pkg/fileutil"
	"github.com/kasa-io/kasa/pkg/helmclient"
)

// helm runs Helm SDK actions as the admin.
type helm struct {
	kubeconfig string
	stateDir   string
	log        *slog.Logger
}

func (h *helm) config(namespace string) (*action.Configuration, error) {
	return helmclient.Options{
		Kubeconfig: h.kubeconfig, CacheDir: filepath.Join(h.stateDir, "kube-cache"), Log: h.log,
	}.Config(namespace)
}

// loadChart finds the chart a spec names: its chartContent, a chart
// embedded in kasa, or a chart from a repository or URL.
func (h *helm) loadChart(spec ChartSpec) (*chart.Chart, error) {
	switch {
	case spec.ChartContent != "":
		data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(spec.ChartContent))
		if err != nil {
			return nil, fmt.Errorf("spec.chartContent is not base64: %w", err)
		}
		ch, err := loader.LoadArchive(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("spec.chartContent: %w", err)
		}
		return ch, nil
	case spec.Chart == "":
		return nil, errors.New("spec.chart or spec.chartContent must be given")
	case spec.Repo == "" && !strings.Contains(spec.Chart, "://"):
		ch, err := charts.Load(spec.Chart)
		if err != nil {
			return nil, fmt.Errorf("%w; give spec.repo for a chart from a repository", err)
		}
		if spec.Version != "" && spec.Version != ch.Metadata.Version {
			return nil, fmt.Errorf("kasa embeds chart %s at version %s, not %s", spec.Chart, ch.Metadata.Version, spec.Version)
		}
		return ch, nil
	}
	settings := cli.New()
	settings.RepositoryCache = filepath.Join(h.stateDir, "repository")
	settings.RepositoryConfig = filepath.Join(h.stateDir, "repositories.yaml")
	settings.RegistryConfig = filepath.Join(h.stateDir, "registry.json")
	opts := action.ChartPathOptions{RepoURL: spec.Repo, Version: spec.Version}
	if spec.RepoCA != "" {
		opts.CaFile = filepath.Join(h.stateDir, "repo-ca-"+shortHash([]byte(spec.RepoCA))+".crt")
		if err := fileutil.WriteFile(opts.CaFile, []byte(spec.RepoCA), 0o600); err != nil {
			return nil, err
		}
	}
	path, err := opts.LocateChart(spec.Chart, settings)
	if err != nil {
		return nil, fmt.Errorf("chart %s from %s: %w", spec.Chart, orURL(spec.Repo), err)
	}
	return loader.Load(path)
}

func orURL(repo string) string {
	if repo == "" {
		return "its URL"
	}
	return repo
}

// values lays the HelmChartConfig's values over the HelmChart's, and the
// set entries over both (strings as strings, numbers as numbers).
func values(spec ChartSpec, config ConfigSpec) (map[string]any, error) {
	vals := map[string]any{}
	for _, src := range []struct{ what, yaml string }{
		{"spec.valuesContent", spec.ValuesContent},
		{"the HelmChartConfig's spec.valuesContent", config.ValuesContent},
	} {
		layer := map[string]any{}
		if err := yaml.Unmarshal([]byte(src.yaml), &layer); err != nil {
			return nil, fmt.Errorf("%s is not valid YAML: %w", src.what, err)
		}
		vals = helmclient.MergeValues(vals, layer)
	}
	for k, v := range spec.Set {
		var err error
		if v.Type == intstr.Int {
			err = strvals.ParseInto(fmt.Sprintf("%s=%d", k, v.IntVal), vals)
		} else {
			err = strvals.ParseIntoString(k+"="+v.StrVal, vals)
		}
		if err != nil {
			return nil, fmt.Errorf("spec.set %s: %w", k, err)
		}
	}
	return vals, nil
}

// digest identifies what a release is made from: the chart's files, the
// values and the namespace.
func digest(ch *chart.Chart, vals map[string]any, namespace string) (string, error) {
	h := sha256.New()
	var walk func(c *chart.Chart)
	walk = func(c *chart.Chart) {
		fmt.Fprintf(h, "chart %s %s\n", c.Metadata.Name, c.Metadata.Version)
		for _, f := range c.Raw {
			fmt.Fprintf(h, "%s %d\n", f.Name, len(f.Data))
			h.Write(f.Data)
		}
		for _, d := range c.Dependencies() {
			walk(d)
		}
	}
	walk(ch)
	v, err := json.Marshal(vals)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(h, "values %s\nnamespace %s\n", v, namespace)
	return hex.EncodeToString(h.Sum(nil)), nil
}

func shortHash(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}

type releaseSpec struct {
	Name, Namespace string
	CreateNamespace bool
	Chart           *chart.Chart
	Values          map[string]any
	Hash            string
	Timeout         time.Duration
	Policy          string
}

type result struct {
	// Action is Installed, Upgraded, or empty when nothing was done.
	Action   string
	Revision int
}

// hashLabel marks a release with the digest it was made from, so that an
// unchanged HelmChart is not upgraded again when the server restarts.
const hashLabel = "kasa.io/applied-hash"

// apply installs or upgrades a release to match r.
func (h *helm) apply(ctx context.Context, r releaseSpec) (result, error) {
	cfg, err := h.config(r.Namespace)
	if err != nil {
		return result{}, err
	}
	last, err := action.NewGet(cfg).Run(r.Name)
	if err != nil && !errors.Is(err, driver.ErrReleaseNotFound) {
		return result{}, err
	}
	if last != nil {
		st := last.Info.Status
		if st == release.StatusDeployed && last.Labels[hashLabel] == r.Hash[:32] {
			return result{Revision: last.Version}, nil
		}
		if st == release.StatusFailed || st.IsPending() {
			if r.Policy == PolicyAbort {
				return result{}, fmt.Errorf("release %s/%s is %s and the failure policy is abort: fix it with helm (rollback or uninstall), then edit the HelmChart", r.Namespace, r.Name, st)
			}
			if st != release.StatusFailed || last.Version == 1 || st.IsPending() {
				h.log.Info("reinstalling helm release", "release", r.Namespace+"/"+r.Name, "status", st)
				if err := h.uninstall(r.Namespace, r.Name); err != nil {
					return result{}, err
				}
				last = nil
			}
		}
	}
	labels := map[string]string{hashLabel: r.Hash[:32]}
	if last == nil {
		in := action.NewInstall(cfg)
		in.ReleaseName, in.Namespace, in.CreateNamespace = r.Name, r.Namespace, r.CreateNamespace
		in.Timeout, in.Labels = r.Timeout, labels
		rel, err := in.RunWithContext(ctx, r.Chart, r.Values)
		if err != nil {
			return result{}, err
		}
		return result{Action: "Installed", Revision: rel.Version}, nil
	}
	up := action.NewUpgrade(cfg)
	up.Namespace, up.Timeout, up.Labels = r.Namespace, r.Timeout, labels
	up.MaxHistory = 10
	rel, err := up.RunWithContext(ctx, r.Name, r.Chart, r.Values)
	if err != nil {
		return result{}, err
	}
	return result{Action: "Upgraded", Revision: rel.Version}, nil
}

// uninstall removes a release; one that is not there is fine.
func (h *helm) uninstall(namespace, name string) error {
	cfg, err := h.config(namespace)
	if err != nil {
		return err
	}
	un := action.NewUninstall(cfg)
	un.Timeout = 5 * time.Minute
	if _, err := un.Run(name); err != nil && !errors.Is(err, driver.ErrReleaseNotFound) {
		return err
	}
	return nil
}
