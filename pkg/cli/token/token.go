// Package token is `kasa token`: the tokens that join nodes. It maps its
// flags to pkg/tokenadmin and prints the outcome.
package token

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kasa-io/kasa/pkg/kubeconfig"
	"github.com/kasa-io/kasa/pkg/settings"
	"github.com/kasa-io/kasa/pkg/tokenadmin"
)

// deps are what the commands are given: the environment that picks the
// default kubeconfig, and how to connect to a cluster (tokenadmin.Connect;
// tests give a fake one).
type deps struct {
	env     kubeconfig.Env
	connect func(tokenadmin.Cluster) (*tokenadmin.Admin, error)
}

// cluster picks the cluster to manage tokens of.
type cluster struct{ kubeconfig, context string }

func (c *cluster) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig file (default: KUBECONFIG, else kasa's admin kubeconfig when readable, else ~/.kube/config)")
	cmd.Flags().StringVar(&c.context, "context", "", "kubeconfig context (default: its current context)")
}

// connect connects to the cluster the flags name, or else to the default
// kubeconfig's (kubeconfig.DefaultPath).
func (c *cluster) connect(d deps) (*tokenadmin.Admin, error) {
	o := tokenadmin.Cluster{Kubeconfig: c.kubeconfig, Context: c.context}
	if o.Kubeconfig == "" {
		if p, ok := kubeconfig.DefaultPath(d.env, nil); ok {
			o.Kubeconfig = p
		}
	}
	return d.connect(o)
}

// NewCommand returns `kasa token`.
func NewCommand(env kubeconfig.Env) *cobra.Command {
	return newCommand(deps{env: env, connect: tokenadmin.Connect})
}

func newCommand(d deps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage the tokens that join nodes to the cluster",
		Long: `Tokens let machines join the cluster. The server token (in <data-dir>/server/token on a
server) joins servers and agents; an agent token (kasa server --agent-token) and the tokens that
kasa token create makes join agents only. Every full token starts with K10 and the hash of the
cluster CA, which a joining node checks before it sends the secret.`,
	}
	cmd.AddCommand(createCommand(d), listCommand(d), deleteCommand(d), rotateCommand(d))
	return cmd
}

func createCommand(d deps) *cobra.Command {
	var c cluster
	var o tokenadmin.CreateOptions
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Make a token that joins agents, for a limited time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return fmt.Errorf("invalid --ttl: %w", err)
			}
			admin, err := c.connect(d)
			if err != nil {
				return err
			}
			t, err := admin.Create(cmd.Context(), o)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.String())
			return nil
		},
	}
	c.bind(cmd)
	cmd.Flags().DurationVar(&o.TTL, "ttl", 24*time.Hour, "how long the token joins nodes (0: no expiry)")
	cmd.Flags().StringVar(&o.Description, "description", "", "what the token is for, shown by kasa token list")
	return cmd
}

func listCommand(d deps) *cobra.Command {
	var c cluster
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the tokens made by kasa token create",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			admin, err := c.connect(d)
			if err != nil {
				return err
			}
			list, err := admin.List(cmd.Context())
			if err != nil {
				return err
			}
			printList(cmd.OutOrStdout(), list, time.Now())
			return nil
		},
	}
	c.bind(cmd)
	return cmd
}

func printList(out io.Writer, list []tokenadmin.BootstrapToken, now time.Time) {
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

func deleteCommand(d deps) *cobra.Command {
	var c cluster
	cmd := &cobra.Command{
		Use:   "delete ID...",
		Short: "Delete tokens made by kasa token create",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			admin, err := c.connect(d)
			if err != nil {
				return err
			}
			for _, id := range args {
				if err := admin.Delete(cmd.Context(), id); err != nil {
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

func rotateCommand(d deps) *cobra.Command {
	var c cluster
	var o tokenadmin.RotateOptions
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Give the cluster a new server (or agent) secret; joined nodes keep working",
		Long: `Rotate replaces the server token's secret (with --agent, the agent token's). The old secret
stops joining nodes at once; nodes that have joined keep their certificates and keep working. On a
server, the token file in the data dir (--data-dir, else KASA_DATA_DIR, else data-dir in the config
file) is rewritten too. The new token is printed.`,
		Args: cobra.NoArgs,
	}
	c.bind(cmd)
	cmd.Flags().BoolVar(&o.Agent, "agent", false, "rotate the agent token instead of the server token")
	cmd.Flags().StringVar(&o.Secret, "new-token", "", "the new secret, of 16 characters or more (default: a random one)")
	settings.Sensitive(cmd.Flags(), "new-token")
	// The data dir is found as every command finds it: --data-dir, else
	// KASA_DATA_DIR, else data-dir in the config file, else the default.
	resolveDataDir := settings.BindDataDir(cmd.Flags(), os.LookupEnv)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := o.Complete(); err != nil {
			return fmt.Errorf("invalid --new-token: %w", err)
		}
		dataDir, err := resolveDataDir()
		if err != nil {
			return err
		}
		o.DataDir = dataDir
		admin, err := c.connect(d)
		if err != nil {
			return err
		}
		r, err := admin.Rotate(cmd.Context(), o)
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), r.Token.String())
		if r.File == "" {
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s does not exist, so no token file was rewritten: the token above is the only copy of the new secret. On a server, rotate again with its data dir (--data-dir, KASA_DATA_DIR or data-dir in the config file)\n", r.ServerDir)
		}
		return nil
	}
	return cmd
}
