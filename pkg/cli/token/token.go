// Package token is `kasa token`: the tokens that join nodes.
package token

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/fileutil"
	"github.com/kasa-io/kasa/pkg/join/joinserver"
	"github.com/kasa-io/kasa/pkg/kubeconfig"
	"github.com/kasa-io/kasa/pkg/token"
)

// cluster picks the cluster to manage tokens of.
type cluster struct{ kubeconfig, context string }

func (c *cluster) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig file (default: KUBECONFIG, else kasa's admin kubeconfig when readable, else ~/.kube/config)")
	cmd.Flags().StringVar(&c.context, "context", "", "kubeconfig context (default: its current context)")
}

// connect returns a store for the cluster and the hash of its CA, read
// from the kubeconfig, for full tokens.
func (c *cluster) connect(env kubeconfig.Env) (*joinserver.Store, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if c.kubeconfig != "" {
		rules.ExplicitPath = c.kubeconfig
	} else if p, ok := kubeconfig.DefaultPath(env, nil); ok {
		rules.ExplicitPath = p
	}
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: c.context}).ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("no cluster to talk to: %w (run on a server as root, or give --kubeconfig)", err)
	}
	caPEM := rc.CAData
	if len(caPEM) == 0 && rc.CAFile != "" {
		if caPEM, err = os.ReadFile(rc.CAFile); err != nil {
			return nil, "", err
		}
	}
	hash := ""
	if len(caPEM) > 0 {
		hash = token.CAHash(caPEM)
	}
	rc.Timeout = 15 * time.Second
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, "", err
	}
	return &joinserver.Store{Client: cs}, hash, nil
}

// NewCommand returns `kasa token`.
func NewCommand(env kubeconfig.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage the tokens that join nodes to the cluster",
		Long: `Tokens let machines join the cluster. The server token (in <data-dir>/server/token on a
server) joins servers and agents; an agent token (kasa server --agent-token) and the tokens that
kasa token create makes join agents only. Every full token starts with K10 and the hash of the
cluster CA, which a joining node checks before it sends the secret.`,
	}
	cmd.AddCommand(createCommand(env), listCommand(env), deleteCommand(env), rotateCommand(env))
	return cmd
}

func createCommand(env kubeconfig.Env) *cobra.Command {
	var c cluster
	var ttl time.Duration
	var description string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Make a token that joins agents, for a limited time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl < 0 {
				return errors.New("invalid --ttl: want a duration such as 24h, or 0 for no expiry")
			}
			store, hash, err := c.connect(env)
			if err != nil {
				return err
			}
			t, err := store.CreateBootstrap(cmd.Context(), ttl, description)
			if err != nil {
				return fmt.Errorf("create token: %w", err)
			}
			t.CAHash = hash
			fmt.Fprintln(cmd.OutOrStdout(), t.String())
			return nil
		},
	}
	c.bind(cmd)
	cmd.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token joins nodes (0: no expiry)")
	cmd.Flags().StringVar(&description, "description", "", "what the token is for, shown by kasa token list")
	return cmd
}

func listCommand(env kubeconfig.Env) *cobra.Command {
	var c cluster
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the tokens made by kasa token create",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			store, _, err := c.connect(env)
			if err != nil {
				return err
			}
			list, err := store.ListBootstrap(cmd.Context())
			if err != nil {
				return fmt.Errorf("list tokens: %w", err)
			}
			printList(cmd.OutOrStdout(), list, time.Now())
			return nil
		},
	}
	c.bind(cmd)
	return cmd
}

func printList(out io.Writer, list []joinserver.BootstrapToken, now time.Time) {
	w := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
	fmt.Fprintln(w, "ID\tTTL\tEXPIRES\tUSAGES\tDESCRIPTION")
	for _, t := range list {
		ttl, expires := "<forever>", "<never>"
		if !t.Expires.IsZero() {
			expires = t.Expires.UTC().Format(time.RFC3339)
			if left := t.Expires.Sub(now); left > 0 {
				ttl = left.Round(time.Minute).String()
			} else {
				ttl = "<expired>"
			}
		}
		usages := "none"
		if t.Authentication {
			usages = "join agents"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.ID, ttl, expires, usages, t.Description)
	}
	w.Flush()
}

func deleteCommand(env kubeconfig.Env) *cobra.Command {
	var c cluster
	cmd := &cobra.Command{
		Use:   "delete ID...",
		Short: "Delete tokens made by kasa token create",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, _, err := c.connect(env)
			if err != nil {
				return err
			}
			for _, id := range args {
				if err := store.DeleteBootstrap(cmd.Context(), id); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "token %s deleted\n", strings.SplitN(id, ".", 2)[0])
			}
			return nil
		},
	}
	c.bind(cmd)
	return cmd
}

func rotateCommand(env kubeconfig.Env) *cobra.Command {
	var c cluster
	var agent bool
	var newToken, dataDir string
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Give the cluster a new server (or agent) secret; joined nodes keep working",
		Long: `Rotate replaces the server token's secret (with --agent, the agent token's). The old secret
stops joining nodes at once; nodes that have joined keep their certificates and keep working. On a
server, the token file in the data dir is rewritten too. The new token is printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			secret := newToken
			if secret == "" {
				var err error
				if secret, err = token.NewSecret(); err != nil {
					return err
				}
			} else if t, err := token.Parse(secret); err != nil || t.Bootstrap || t.CAHash != "" {
				return errors.New("invalid --new-token: give a secret of one word without ':' or spaces")
			} else if err := token.CheckStrength(secret); err != nil {
				return fmt.Errorf("invalid --new-token: %w", err)
			}
			store, hash, err := c.connect(env)
			if err != nil {
				return err
			}
			if err := store.Rotate(cmd.Context(), agent, secret); err != nil {
				return fmt.Errorf("rotate: %w", err)
			}
			user, file := token.ServerUser, "token"
			if agent {
				user, file = token.AgentUser, "agent-token"
			}
			t := token.Token{CAHash: hash, User: user, Secret: secret}
			path := filepath.Join(dataDir, "server", file)
			if _, err := os.Stat(filepath.Dir(path)); err == nil {
				if err := fileutil.WriteFile(path, []byte(t.String()+"\n"), 0o600); err != nil {
					return fmt.Errorf("the cluster has the new secret, but %s could not be written: %w", path, err)
				}
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.String())
			return nil
		},
	}
	c.bind(cmd)
	cmd.Flags().BoolVar(&agent, "agent", false, "rotate the agent token instead of the server token")
	cmd.Flags().StringVar(&newToken, "new-token", "", "the new secret, of 16 characters or more (default: a random one)")
	config.Sensitive(cmd.Flags(), "new-token")
	cmd.Flags().StringVarP(&dataDir, "data-dir", "d", config.DefaultDataDir, "the server's data dir, whose token file is rewritten")
	return cmd
}
