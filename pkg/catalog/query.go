package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kasa-io/kasa/charts"
)

// Release is an installed app as list and status show it.
type Release struct {
	Name       string    `json:"name"`
	Namespace  string    `json:"namespace"`
	App        string    `json:"app"`
	Chart      string    `json:"chart"`
	AppVersion string    `json:"appVersion"`
	Revision   int       `json:"revision"`
	Status     string    `json:"status"`
	Updated    time.Time `json:"updated"`
	// Ready and Objects are filled by Status.
	Ready   *bool    `json:"ready,omitempty"`
	Objects []string `json:"objects,omitempty"`
	Notes   string   `json:"notes,omitempty"`
}

func fromRelease(r *release.Release) Release {
	out := Release{Name: r.Name, Namespace: r.Namespace, Revision: r.Version}
	if r.Chart != nil && r.Chart.Metadata != nil {
		out.App, out.Chart, out.AppVersion = r.Chart.Metadata.Name, chartName(r.Chart), r.Chart.Metadata.AppVersion
	}
	if r.Info != nil {
		out.Status, out.Updated, out.Notes = r.Info.Status.String(), r.Info.LastDeployed.Time, r.Info.Notes
	}
	return out
}

// List returns the releases of every namespace (Helm's, whoever installed
// them), sorted by namespace and name.
func (c *Client) List(_ context.Context) ([]Release, error) {
	cfg, err := c.config("")
	if err != nil {
		return nil, err
	}
	l := action.NewList(cfg)
	l.AllNamespaces = true
	l.StateMask = action.ListAll
	rels, err := l.Run()
	if err != nil {
		return nil, err
	}
	out := make([]Release, 0, len(rels))
	for _, r := range rels {
		out = append(out, fromRelease(r))
	}
	slices.SortFunc(out, func(a, b Release) int {
		if a.Namespace != b.Namespace {
			return strings.Compare(a.Namespace, b.Namespace)
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// Status returns a release with the state of its objects.
func (c *Client) Status(ctx context.Context, name, namespace string) (Release, error) {
	r, err := c.Get(name, namespace)
	if err != nil {
		return Release{}, err
	}
	out := fromRelease(r)
	st, err := c.Observe(ctx, namespace, name)
	if err != nil {
		return out, err
	}
	out.Ready = &st.Ready
	out.Objects = st.Lines()
	return out, nil
}

// Credential is one generated secret value of a release.
type Credential struct {
	Secret, Key, Value string
}

// Credentials reads a release's credentials: the Secrets the catalog's
// charts label kasa.io/credentials=true.
func (c *Client) Credentials(ctx context.Context, name, namespace string) ([]Credential, error) {
	secrets, err := c.kube.CoreV1().Secrets(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: InstanceLabel + "=" + name + "," + charts.CredentialsLabel + "=true",
	})
	if err != nil {
		return nil, err
	}
	var out []Credential
	for _, s := range secrets.Items {
		keys := make([]string, 0, len(s.Data))
		for k := range s.Data {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			out = append(out, Credential{Secret: s.Name, Key: k, Value: string(s.Data[k])})
		}
	}
	return out, nil
}

// PrintConnection prints a release's notes and credentials.
func (c *Client) PrintConnection(ctx context.Context, rel *release.Release) error {
	if rel.Info != nil && rel.Info.Notes != "" {
		fmt.Fprintf(c.Out, "\n%s\n", rel.Info.Notes)
	}
	creds, err := c.Credentials(ctx, rel.Name, rel.Namespace)
	if err != nil {
		return err
	}
	if len(creds) > 0 {
		fmt.Fprintf(c.Out, "\nCredentials (`kasa info %s -n %s` shows them again):\n", rel.Name, rel.Namespace)
		secret := ""
		for _, cr := range creds {
			if cr.Secret != secret {
				secret = cr.Secret
				fmt.Fprintf(c.Out, "  Secret %s:\n", secret)
			}
			fmt.Fprintf(c.Out, "    %s: %s\n", cr.Key, cr.Value)
		}
	}
	return nil
}

// Get returns an installed release.
func (c *Client) Get(name, namespace string) (*release.Release, error) {
	cfg, err := c.config(namespace)
	if err != nil {
		return nil, err
	}
	r, err := action.NewGet(cfg).Run(name)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		return nil, fmt.Errorf("%w: no release %s in namespace %s (`kasa list` shows what is installed)", ErrNotFound, name, namespace)
	}
	return r, err
}
