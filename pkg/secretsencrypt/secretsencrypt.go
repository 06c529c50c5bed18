// Package secretsencrypt keeps the cluster's Secrets encrypted at rest: the
// API server's encryption configuration (a key of AES-GCM or secretbox,
// in a 0600 file of the server folder), its changes at start (on, off, a
// new provider) and in `kasa secrets-encrypt rotate-keys`, and the re-write
// of every Secret that is not under the key that writes.
//
// The API server reads the file with automatic reload on: a change takes
// effect without a restart, and each API server publishes the hash of the
// file it has loaded (apiserver_encryption_config_controller_last_config_info).
package secretsencrypt

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"sigs.k8s.io/yaml"

	"github.com/kasa-io/kasa/pkg/fileutil"
)

// The providers kasa writes with; secretbox by default, as upstream
// recommends it among the providers with a local key.
const (
	Secretbox = "secretbox"
	AESGCM    = "aesgcm"
	// Identity is the name of plaintext: the provider that stores as is.
	Identity = "identity"
)

// Providers are the values of --secrets-encryption-provider.
var Providers = []string{Secretbox, AESGCM}

// Resources are the resources kasa encrypts.
var Resources = []string{"secrets"}

// Key is one encryption key.
type Key struct {
	Provider string // Secretbox or AESGCM
	Name     string
	Secret   []byte // 32 bytes
}

// ID names the key as stored values name it: provider:name.
func (k Key) ID() string { return k.Provider + ":" + k.Name }

// Config is the API server's encryption configuration, as kasa makes it.
type Config struct {
	// Write is the key that encrypts what the API server writes; nil when
	// encryption is off and Secrets are written in plaintext.
	Write *Key
	// Read are older keys, still needed to read what they encrypted.
	Read []Key
}

// WriteID is what a value written now is stored under: the write key's
// ID, or Identity.
func (c Config) WriteID() string {
	if c.Write == nil {
		return Identity
	}
	return c.Write.ID()
}

// NewKey makes a random key of provider, named after now.
func NewKey(provider string, now time.Time) (Key, error) {
	if !slices.Contains(Providers, provider) {
		return Key{}, fmt.Errorf("--secrets-encryption-provider %q: use one of %s", provider, strings.Join(Providers, ", "))
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return Key{}, err
	}
	return Key{Provider: provider, Name: "kasa-" + now.UTC().Format("20060102T150405Z"), Secret: secret}, nil
}

// Render is the file the API server reads: the write key's provider
// first with the write key first, then every other key, then identity,
// which reads what was stored in plaintext (identity first when
// encryption is off).
func (c Config) Render() ([]byte, error) {
	var keys []Key
	if c.Write != nil {
		keys = append(keys, *c.Write)
	}
	keys = append(keys, c.Read...)
	seen := map[string]bool{}
	var providers []apiserverv1.ProviderConfiguration
	if c.Write == nil {
		providers = append(providers, apiserverv1.ProviderConfiguration{Identity: &apiserverv1.IdentityConfiguration{}})
	}
	// One provider entry per kind, its keys in order.
	for _, k := range keys {
		if seen[k.ID()] {
			return nil, fmt.Errorf("key %s appears twice", k.ID())
		}
		seen[k.ID()] = true
		ak := apiserverv1.Key{Name: k.Name, Secret: encode(k.Secret)}
		i := slices.IndexFunc(providers, func(p apiserverv1.ProviderConfiguration) bool { return providerName(p) == k.Provider })
		if i < 0 {
			var p apiserverv1.ProviderConfiguration
			switch k.Provider {
			case Secretbox:
				p.Secretbox = &apiserverv1.SecretboxConfiguration{}
			case AESGCM:
				p.AESGCM = &apiserverv1.AESConfiguration{}
			default:
				return nil, fmt.Errorf("key %s: unknown provider", k.Name)
			}
			providers = append(providers, p)
			i = len(providers) - 1
		}
		if p := providers[i]; p.Secretbox != nil {
			p.Secretbox.Keys = append(p.Secretbox.Keys, ak)
		} else {
			p.AESGCM.Keys = append(p.AESGCM.Keys, ak)
		}
	}
	if c.Write != nil {
		providers = append(providers, apiserverv1.ProviderConfiguration{Identity: &apiserverv1.IdentityConfiguration{}})
	}
	ec := apiserverv1.EncryptionConfiguration{Resources: []apiserverv1.ResourceConfiguration{{Resources: Resources, Providers: providers}}}
	ec.APIVersion, ec.Kind = apiserverv1.SchemeGroupVersion.String(), "EncryptionConfiguration"
	return yaml.Marshal(ec)
}

func providerName(p apiserverv1.ProviderConfiguration) string {
	switch {
	case p.Secretbox != nil:
		return Secretbox
	case p.AESGCM != nil:
		return AESGCM
	case p.Identity != nil:
		return Identity
	}
	return ""
}

// Parse reads a file that Render made.
func Parse(b []byte) (Config, error) {
	var ec apiserverv1.EncryptionConfiguration
	if err := yaml.UnmarshalStrict(b, &ec); err != nil {
		return Config{}, err
	}
	if len(ec.Resources) != 1 || !slices.Equal(ec.Resources[0].Resources, Resources) {
		return Config{}, errors.New("not an encryption configuration of kasa's: it must cover secrets alone")
	}
	var c Config
	for i, p := range ec.Resources[0].Providers {
		name := providerName(p)
		var keys []apiserverv1.Key
		switch name {
		case Identity:
			continue
		case Secretbox:
			keys = p.Secretbox.Keys
		case AESGCM:
			keys = p.AESGCM.Keys
		default:
			return Config{}, errors.New("not an encryption configuration of kasa's: it has a provider other than secretbox, aesgcm and identity")
		}
		for j, ak := range keys {
			secret, err := decode(ak.Secret)
			if err != nil {
				return Config{}, fmt.Errorf("key %s: %w", ak.Name, err)
			}
			k := Key{Provider: name, Name: ak.Name, Secret: secret}
			if i == 0 && j == 0 {
				c.Write = &k
			} else {
				c.Read = append(c.Read, k)
			}
		}
	}
	return c, nil
}

// Load reads the file at path; false when there is none.
func Load(path string) (Config, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Config{}, false, nil
	} else if err != nil {
		return Config{}, false, err
	}
	c, err := Parse(b)
	if err != nil {
		return Config{}, false, fmt.Errorf("%s: %w", path, err)
	}
	return c, true, nil
}

// Save writes c to path, 0600, replacing the file in one step.
func Save(path string, c Config) error {
	b, err := c.Render()
	if err != nil {
		return err
	}
	return fileutil.WriteFile(path, b, 0o600)
}

// Ensure makes the file at path say what the server's flags say, at
// start: with encryption on, a key of provider writes (a new one, unless
// the file has one of that provider); with it off, identity writes and
// the keys stay, to read what they encrypted. It returns the file's
// configuration and whether it exists; without encryption and without a
// file there is none.
func Ensure(path string, on bool, provider string, now time.Time) (Config, bool, error) {
	c, exists, err := Load(path)
	if err != nil {
		return Config{}, false, err
	}
	want := c
	switch {
	case !on && !exists:
		return c, false, nil
	case !on && c.Write != nil:
		want = Config{Read: append([]Key{*c.Write}, c.Read...)}
	case on && (c.Write == nil || c.Write.Provider != provider):
		var rest []Key
		if c.Write != nil {
			rest = append(rest, *c.Write)
		}
		var write *Key
		for _, k := range c.Read {
			if write == nil && k.Provider == provider {
				write = &k
			} else {
				rest = append(rest, k)
			}
		}
		if write == nil {
			k, err := NewKey(provider, now)
			if err != nil {
				return Config{}, false, err
			}
			write = &k
		}
		want = Config{Write: write, Read: rest}
	}
	if exists && equal(want, c) {
		return c, true, nil
	}
	if err := Save(path, want); err != nil {
		return Config{}, false, err
	}
	return want, true, nil
}

func equal(a, b Config) bool {
	ra, erra := a.Render()
	rb, errb := b.Render()
	return erra == nil && errb == nil && bytes.Equal(ra, rb)
}

// Rotated is c with a new write key of the write key's provider, every
// key kept to read; c must have a write key.
func (c Config) Rotated(now time.Time) (Config, error) {
	if c.Write == nil {
		return Config{}, errors.New("no key writes")
	}
	k, err := NewKey(c.Write.Provider, now)
	if err != nil {
		return Config{}, err
	}
	read := append([]Key{*c.Write}, c.Read...)
	for _, r := range read {
		if r.Name == k.Name {
			return Config{}, fmt.Errorf("a key named %s exists: wait a second and rotate again", k.Name)
		}
	}
	return Config{Write: &k, Read: read}, nil
}

// StoredUnder names what a value stored by the API server is under: the
// ID of the key that encrypted it (provider:name), or Identity.
func StoredUnder(value []byte) string {
	rest, ok := bytes.CutPrefix(value, []byte("k8s:enc:"))
	if !ok {
		return Identity
	}
	// provider:v1:name:ciphertext
	parts := bytes.SplitN(rest, []byte(":"), 4)
	if len(parts) < 4 {
		return Identity
	}
	return string(parts[0]) + ":" + string(parts[2])
}

func encode(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func decode(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err == nil && len(b) != 32 {
		err = fmt.Errorf("the secret is %d bytes, not 32", len(b))
	}
	return b, err
}
