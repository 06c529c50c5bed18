// Package tokenadmin manages a cluster's join tokens: the bootstrap tokens
// that join agents for a while, and the rotation of the server and agent
// secrets, with the token files a server keeps in its data dir. `kasa
// token` is its command line.
package tokenadmin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kasa-io/kasa/pkg/datadir"
	"github.com/kasa-io/kasa/pkg/fileutil"
	"github.com/kasa-io/kasa/pkg/join/joinserver"
	"github.com/kasa-io/kasa/pkg/token"
)

// Cluster names the cluster whose tokens are managed.
type Cluster struct {
	// Kubeconfig is the kubeconfig file; empty means client-go's default
	// (KUBECONFIG, else ~/.kube/config).
	Kubeconfig string
	// Context is the kubeconfig's context; empty means its current one.
	Context string
}

// Admin manages the tokens of one cluster.
type Admin struct {
	store *joinserver.Store
	// caHash is the hash of the cluster's CA (token.CAHash) that full
	// tokens name; empty when the kubeconfig holds no CA, and tokens are
	// then short.
	caHash string
}

// New manages the tokens of the cluster that client talks to, whose CA has
// the hash caHash ("" when unknown: tokens are printed short).
func New(client kubernetes.Interface, caHash string) *Admin {
	return &Admin{store: &joinserver.Store{Client: client}, caHash: caHash}
}

// Connect manages the tokens of the cluster c names, with the CA of its
// kubeconfig for full tokens.
func Connect(c Cluster) (*Admin, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if c.Kubeconfig != "" {
		rules.ExplicitPath = c.Kubeconfig
	}
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: c.Context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("no cluster to talk to: %w (run on a server as root, or give --kubeconfig)", err)
	}
	caPEM := rc.CAData
	if len(caPEM) == 0 && rc.CAFile != "" {
		if caPEM, err = os.ReadFile(rc.CAFile); err != nil {
			return nil, err
		}
	}
	hash := ""
	if len(caPEM) > 0 {
		hash = token.CAHash(caPEM)
	}
	rc.Timeout = 15 * time.Second
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return New(cs, hash), nil
}

// CreateOptions are the settings of a new bootstrap token.
type CreateOptions struct {
	// TTL is how long the token joins nodes; 0 means for ever.
	TTL time.Duration
	// Description says what the token is for; List shows it.
	Description string
}

// ErrInvalidTTL is returned for a negative TTL.
var ErrInvalidTTL = errors.New("want a duration such as 24h, or 0 for no expiry")

// Validate checks the options before anything is asked of the cluster.
func (o CreateOptions) Validate() error {
	if o.TTL < 0 {
		return ErrInvalidTTL
	}
	return nil
}

// Create makes a bootstrap token that joins agents, in full form when the
// cluster's CA is known.
func (a *Admin) Create(ctx context.Context, o CreateOptions) (token.Token, error) {
	if err := o.Validate(); err != nil {
		return token.Token{}, err
	}
	t, err := a.store.CreateBootstrap(ctx, o.TTL, o.Description)
	if err != nil {
		return token.Token{}, fmt.Errorf("create token: %w", err)
	}
	t.CAHash = a.caHash
	return t, nil
}

// BootstrapToken is a token made by Create, as List shows it.
type BootstrapToken = joinserver.BootstrapToken

// List returns the bootstrap tokens, oldest first.
func (a *Admin) List(ctx context.Context) ([]BootstrapToken, error) {
	list, err := a.store.ListBootstrap(ctx)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return list, nil
}

// Delete deletes the bootstrap token id (its id, or the whole token).
func (a *Admin) Delete(ctx context.Context, id string) error {
	return a.store.DeleteBootstrap(ctx, id)
}

// RotateOptions say which secret to rotate, to what, and where the
// server's token files are.
type RotateOptions struct {
	// Agent rotates the agent secret instead of the server secret.
	Agent bool
	// Secret is the new secret; Complete makes a random one when empty.
	Secret string
	// DataDir is the server's data dir: its token file (server/token or
	// server/agent-token) is rewritten when its server folder exists.
	DataDir string
}

// ErrMalformedSecret is returned for a new secret that is a token or more
// than one word.
var ErrMalformedSecret = errors.New("give a secret of one word without ':' or spaces")

// Complete checks the new secret (token.CheckStrength), or makes a random
// one when none is given. Its errors never contain the secret.
func (o *RotateOptions) Complete() error {
	if o.Secret == "" {
		secret, err := token.NewSecret()
		if err != nil {
			return err
		}
		o.Secret = secret
		return nil
	}
	if t, err := token.Parse(o.Secret); err != nil || t.Bootstrap || t.CAHash != "" {
		return ErrMalformedSecret
	}
	return token.CheckStrength(o.Secret)
}

// Rotated is the outcome of a rotation.
type Rotated struct {
	// Token is the new token, in full form when the cluster's CA is known.
	Token token.Token
	// ServerDir is the server folder of the data dir, and File the token
	// file rewritten in it; File is empty when ServerDir does not exist
	// (the data dir is not a server's), and nothing was written.
	ServerDir string
	File      string
}

// Rotate gives the cluster a new server secret (or, with o.Agent, agent
// secret): the old one stops joining nodes at once; joined nodes keep
// their certificates. It then rewrites the token file of the data dir
// when it has a server folder.
func (a *Admin) Rotate(ctx context.Context, o RotateOptions) (Rotated, error) {
	if err := o.Complete(); err != nil {
		return Rotated{}, err
	}
	if err := a.store.Rotate(ctx, o.Agent, o.Secret); err != nil {
		return Rotated{}, fmt.Errorf("rotate: %w", err)
	}
	server := datadir.New(o.DataDir).Server()
	user, path := token.ServerUser, server.Token()
	if o.Agent {
		user, path = token.AgentUser, server.AgentToken()
	}
	r := Rotated{Token: token.Token{CAHash: a.caHash, User: user, Secret: o.Secret}}
	if o.DataDir == "" {
		return r, nil
	}
	r.ServerDir = server.Root
	if _, err := os.Stat(r.ServerDir); err != nil {
		return r, nil
	}
	if err := fileutil.WriteFile(path, []byte(r.Token.String()+"\n"), 0o600); err != nil {
		return Rotated{}, fmt.Errorf("the cluster has the new secret, but %s could not be written: %w", path, err)
	}
	r.File = path
	return r, nil
}
