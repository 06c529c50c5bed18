package containerd

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/kasa-io/kasa/pkg/fileutil"
)

// Registries is registries.yaml, in k3s's format.
type Registries struct {
	Mirrors map[string]Mirror         `yaml:"mirrors"`
	Configs map[string]RegistryConfig `yaml:"configs"`
}

// Mirror lists the endpoints that serve a registry's images.
type Mirror struct {
	Endpoints []string          `yaml:"endpoint"`
	Rewrites  map[string]string `yaml:"rewrite"`
}

// RegistryConfig holds the credentials and TLS settings of one endpoint host.
type RegistryConfig struct {
	Auth *struct {
		Username string `yaml:"username"`
		Password string `yaml:"password"`
		Auth     string `yaml:"auth"`
	} `yaml:"auth"`
	TLS *struct {
		CertFile           string `yaml:"cert_file"`
		KeyFile            string `yaml:"key_file"`
		CAFile             string `yaml:"ca_file"`
		InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	} `yaml:"tls"`
}

// LoadRegistries reads a registries.yaml; a missing file is no configuration.
func LoadRegistries(file string) (*Registries, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return &Registries{}, nil
	}
	if err != nil {
		return nil, err
	}
	var r Registries
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&r); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	for name, m := range r.Mirrors {
		if len(m.Rewrites) > 0 {
			return nil, fmt.Errorf("%s: mirrors.%s.rewrite: upstream containerd has no image-name rewrites; point the mirror at a path that serves the images under their own names", file, name)
		}
		for _, ep := range m.Endpoints {
			if u, err := url.Parse(ep); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return nil, fmt.Errorf("%s: mirrors.%s.endpoint %q: want http:// or https:// and a host", file, name, ep)
			}
		}
	}
	return &r, nil
}

// WriteHosts turns the configuration into containerd's hosts.toml folders
// under dir (one per registry; "*" becomes _default), replacing what was
// there. With disableDefault, a registry's own endpoint is never tried after
// its mirrors: the last mirror becomes its server.
func (r *Registries) WriteHosts(dir string, disableDefault bool) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	names := make([]string, 0, len(r.Mirrors))
	for name := range r.Mirrors {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		folder := name
		if name == "*" {
			folder = "_default"
		}
		toml, err := r.hostsTOML(name, r.Mirrors[name].Endpoints, disableDefault)
		if err != nil {
			return err
		}
		if err := fileutil.WriteFile(filepath.Join(dir, folder, "hosts.toml"), toml, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (r *Registries) hostsTOML(registry string, endpoints []string, disableDefault bool) ([]byte, error) {
	var b strings.Builder
	b.WriteString("# Written by kasa from registries.yaml at every start; edits are lost.\n")
	hosts := endpoints
	if disableDefault && len(endpoints) > 0 {
		last := endpoints[len(endpoints)-1]
		hosts = endpoints[:len(endpoints)-1]
		fmt.Fprintf(&b, "server = %s\n", strconv.Quote(last))
		if err := r.writeHostSettings(&b, last, ""); err != nil {
			return nil, err
		}
	} else if registry != "*" {
		server := "https://" + registry
		if registry == "docker.io" {
			server = "https://registry-1.docker.io"
		}
		fmt.Fprintf(&b, "server = %s\n", strconv.Quote(server))
	}
	for _, ep := range hosts {
		fmt.Fprintf(&b, "\n[host.%s]\n  capabilities = [\"pull\", \"resolve\"]\n", strconv.Quote(ep))
		if err := r.writeHostSettings(&b, ep, "  "); err != nil {
			return nil, err
		}
	}
	return []byte(b.String()), nil
}

// writeHostSettings adds the TLS and auth settings of an endpoint's host.
func (r *Registries) writeHostSettings(b *strings.Builder, endpoint, indent string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return err
	}
	c, ok := r.Configs[u.Host]
	if !ok {
		return nil
	}
	if t := c.TLS; t != nil {
		if t.CAFile != "" {
			fmt.Fprintf(b, "%sca = %s\n", indent, strconv.Quote(t.CAFile))
		}
		if t.CertFile != "" && t.KeyFile != "" {
			fmt.Fprintf(b, "%sclient = [[%s, %s]]\n", indent, strconv.Quote(t.CertFile), strconv.Quote(t.KeyFile))
		}
		if t.InsecureSkipVerify {
			fmt.Fprintf(b, "%sskip_verify = true\n", indent)
		}
	}
	if a := c.Auth; a != nil {
		cred := a.Auth
		if cred == "" && a.Username != "" {
			cred = base64.StdEncoding.EncodeToString([]byte(a.Username + ":" + a.Password))
		}
		if cred != "" {
			table := "header" // the root server's
			if indent != "" {
				table = "host." + strconv.Quote(endpoint) + ".header"
			}
			fmt.Fprintf(b, "%s[%s]\n%s  Authorization = %s\n", indent, table, indent, strconv.Quote("Basic "+cred))
		}
	}
	return nil
}
