// Package secretsencrypt is `kasa secrets-encrypt`: the keys that encrypt
// Secrets at rest, on a server. It maps its flags to pkg/secretsencrypt.
package secretsencrypt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kasa-io/kasa/pkg/bootstrap"
	"github.com/kasa-io/kasa/pkg/datadir"
	"github.com/kasa-io/kasa/pkg/datastore"
	"github.com/kasa-io/kasa/pkg/secretsencrypt"
	"github.com/kasa-io/kasa/pkg/settings"
)

// NewCommand returns `kasa secrets-encrypt`.
func NewCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secrets-encrypt",
		Short: "Show and rotate the keys that encrypt Secrets at rest (on a server)",
		Long: `A server encrypts Secrets at rest unless started with --secrets-encryption=false: the API
server writes each Secret encrypted with the key of <data-dir>/server/cred/encryption-config.yaml
(secretbox, or aesgcm with --secrets-encryption-provider). These commands run on a running server,
as root, and read its data dir (--data-dir, else KASA_DATA_DIR, else data-dir in the config file).`,
	}
	cmd.AddCommand(statusCommand(), rotateKeysCommand())
	return cmd
}

// server is the data dir of the server the commands work on.
type server struct {
	dataDir func() (string, error)
}

func (s *server) bind(cmd *cobra.Command) {
	s.dataDir = settings.BindDataDir(cmd.Flags(), os.LookupEnv)
}

// connect reaches the running server of the data dir; done closes it.
func (s *server) connect(ctx context.Context) (c secretsencrypt.Cluster, done func(), err error) {
	dir, err := s.dataDir()
	if err != nil {
		return c, nil, err
	}
	p := datadir.New(dir).Server()
	sock := datastore.SocketPath(p.DB())
	if _, err := os.Stat(sock); err != nil {
		return c, nil, fmt.Errorf("no server runs with the data dir %s (%s: %w): run this on a running server, with its --data-dir", dir, sock, errors.Unwrap(err))
	}
	rc, err := clientcmd.BuildConfigFromFlags("", p.Cred("admin.kubeconfig"))
	if err != nil {
		return c, nil, fmt.Errorf("the server's admin identity: %w", err)
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return c, nil, err
	}
	kv, err := datastore.NewKV([]string{"unix://" + sock})
	if err != nil {
		return c, nil, err
	}
	_, shared, err := kv.Get(ctx, bootstrap.Key)
	if err != nil {
		kv.Close()
		return c, nil, fmt.Errorf("read the datastore through %s: %w", sock, err)
	}
	return secretsencrypt.Cluster{
		File: p.EncryptionConfig(), Stored: kv, Client: client, Shared: shared,
		Now: time.Now, Wait: 2 * time.Minute,
	}, func() { kv.Close() }, nil
}

func statusCommand() *cobra.Command {
	var s server
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the keys, whether the API server runs with them, and what the stored Secrets are under",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, done, err := s.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			st.Print(cmd.OutOrStdout())
			return nil
		},
	}
	s.bind(cmd)
	return cmd
}

func rotateKeysCommand() *cobra.Command {
	var s server
	cmd := &cobra.Command{
		Use:   "rotate-keys",
		Short: "Encrypt every Secret with a new key, then drop the old keys",
		Long: `rotate-keys adds a new key that writes (the old ones still read), waits until the API server
runs with it, has every Secret written again under the new key, checks in the datastore that none
is left under an old key, and then drops the old keys. No restart is needed. A failed step keeps
every key a Secret may need; run the command again to go on.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, done, err := s.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			c.Out = cmd.OutOrStdout()
			_, err = c.RotateKeys(cmd.Context())
			return err
		},
	}
	s.bind(cmd)
	return cmd
}
