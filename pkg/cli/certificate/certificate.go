// Package certificate is `kasa certificate`: the certificates of a server
// or agent, their expiry and their renewal. It maps its flags to pkg/pki
// and pkg/agent.
package certificate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kasa-io/kasa/pkg/agent"
	"github.com/kasa-io/kasa/pkg/cli/output"
	"github.com/kasa-io/kasa/pkg/datadir"
	"github.com/kasa-io/kasa/pkg/pki"
	"github.com/kasa-io/kasa/pkg/server"
	"github.com/kasa-io/kasa/pkg/settings"
)

// NewCommand returns `kasa certificate`.
func NewCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certificate",
		Short: "List and renew the certificates of this server or agent",
		Long: `Every certificate kasa issues lives a year and is renewed by the running server or agent when
fewer than 90 days remain (checked daily); the components read the new files without a restart.
These commands run on the machine, as root, and find its data dir as kasa server and kasa agent do
(--data-dir, else KASA_DATA_DIR, else data-dir in the config file).`,
	}
	cmd.AddCommand(checkCommand(), rotateCommand(), rotateCACommand())
	return cmd
}

func checkCommand() *cobra.Command {
	var format string
	var dataDir func() (string, error)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "List every certificate and CA with its expiry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := output.Check(format); err != nil {
				return err
			}
			dir, err := dataDir()
			if err != nil {
				return err
			}
			now := time.Now()
			infos, err := inventory(dir, now)
			if err != nil {
				return err
			}
			return output.Print(cmd.OutOrStdout(), format, infos, func(w io.Writer) { printTable(w, dir, infos, now) })
		},
	}
	dataDir = settings.BindDataDir(cmd.Flags(), os.LookupEnv)
	output.Bind(cmd, &format)
	return cmd
}

// inventory lists the certificates of the server and agent folders of dir.
func inventory(dir string, now time.Time) ([]pki.Info, error) {
	d := datadir.New(dir)
	tlsDirs := []string{d.Server().TLS(""), d.Agent().TLS("")}
	found := false
	for _, t := range tlsDirs {
		if _, err := os.Stat(t); err == nil {
			found = true
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	if !found {
		return nil, fmt.Errorf("no certificates in the data dir %s: it is neither a server's nor an agent's (give --data-dir)", dir)
	}
	return pki.Inventory(now, tlsDirs...)
}

func printTable(tw io.Writer, dir string, infos []pki.Info, now time.Time) {
	fmt.Fprintln(tw, "FILE\tSUBJECT\tEXPIRES\tREMAINING\tSTATUS")
	for _, in := range infos {
		file, err := filepath.Rel(dir, in.File)
		if err != nil {
			file = in.File
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", file, in.Subject, in.NotAfter.UTC().Format(time.RFC3339), remaining(in.NotAfter.Sub(now)), in.Status)
	}
}

// remaining is a duration in days, or hours and minutes under two days.
func remaining(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
	return d.Truncate(time.Minute).String()
}

// services are the names rotate --service takes (k3s's), and the files of
// each, in the server's folder (server) or the node's.
var services = []struct {
	name   string
	server bool
	files  []string
}{
	{"admin", true, []string{"client-admin.crt"}},
	{"api-server", true, []string{"serving-kube-apiserver.crt", "client-kube-apiserver.crt"}},
	{"controller-manager", true, []string{"client-controller.crt"}},
	{"scheduler", true, []string{"client-scheduler.crt"}},
	{"auth-proxy", true, []string{"client-auth-proxy.crt"}},
	{"kubelet", false, []string{"client-kubelet.crt", "serving-kubelet.crt"}},
	{"kube-proxy", false, []string{"client-kube-proxy.crt"}},
}

func serviceNames() []string {
	var out []string
	for _, s := range services {
		out = append(out, s.name)
	}
	return out
}

func rotateCommand() *cobra.Command {
	var names []string
	var dataDir func() (string, error)
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Renew certificates now, while kasa runs",
		Long: `rotate issues the certificates again now, for the same keys and names, with a full lifetime. On a
server the server's CAs sign them; on an agent a server renews the node's certificates, as the agent
does on its own when they are due. The running components read the new files without a restart
(clients within 5 minutes). The CAs stay; kasa certificate check shows the new dates.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, n := range names {
				if !slices.Contains(serviceNames(), n) {
					return fmt.Errorf("unknown --service %q: want one of %s", n, strings.Join(serviceNames(), ", "))
				}
			}
			dir, err := dataDir()
			if err != nil {
				return err
			}
			return rotate(cmd, dir, names)
		},
	}
	dataDir = settings.BindDataDir(cmd.Flags(), os.LookupEnv)
	cmd.Flags().StringSliceVarP(&names, "service", "s", nil, "renew only these: "+strings.Join(serviceNames(), ", ")+" (default: all)")
	return cmd
}

func rotate(cmd *cobra.Command, dir string, names []string) error {
	d := datadir.New(dir)
	now := time.Now()
	cas, err := serverCAs(d.Server(), now)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	nodeRenewed := false
	for _, s := range services {
		if len(names) > 0 && !slices.Contains(names, s.name) {
			continue
		}
		tlsDir := d.Agent().TLS("")
		if s.server {
			tlsDir = d.Server().TLS("")
		}
		for _, f := range s.files {
			file := filepath.Join(tlsDir, f)
			if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
				continue // a server with --disable-agent, or an agent
			} else if err != nil {
				return err
			}
			if len(cas) == 0 {
				// An agent: a server renews the node's certificates, all at once.
				if s.server || nodeRenewed {
					continue
				}
				log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
				if err := agent.RenewNow(cmd.Context(), dir, log); err != nil {
					return err
				}
				nodeRenewed = true
				fmt.Fprintln(out, "renewed the node's certificates")
				continue
			}
			if err := renewFile(cas, file, now); err != nil {
				return err
			}
			notAfter, _ := pki.NotAfter(file)
			fmt.Fprintf(out, "renewed %s (expires %s)\n", file, notAfter.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// serverCAs loads the CAs of a server's folder whose keys are there; none
// on an agent.
func serverCAs(p datadir.Server, now time.Time) ([]*pki.CA, error) {
	var cas []*pki.CA
	for _, name := range []string{"ca", "client-ca", "kubelet-ca", "request-header-ca"} {
		ca, err := pki.LoadCA(p.TLS(name+".crt"), p.TLS(name+".key"), now)
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, err
		}
		cas = append(cas, ca)
	}
	return cas, nil
}

func renewFile(cas []*pki.CA, file string, now time.Time) error {
	for _, ca := range cas {
		signed, err := ca.Renew(file, now)
		if err != nil {
			return fmt.Errorf("renew %s: %w", file, err)
		}
		if signed {
			return nil
		}
	}
	return fmt.Errorf("renew %s: none of this server's CAs signed it", file)
}

func rotateCACommand() *cobra.Command {
	var finish, force bool
	var wait time.Duration
	var dataDir func() (string, error)
	cmd := &cobra.Command{
		Use:   "rotate-ca",
		Short: "Replace the cluster's CAs with new ones, in two steps that keep every node working",
		Long: `rotate-ca replaces the four CAs of a server (ca, client-ca, kubelet-ca, request-header-ca) in two
steps; nothing restarts and no node joins again.

1. kasa certificate rotate-ca makes new CAs. They sign from now on; the old ones stay trusted, and
   each new CA, signed by its old one (a cross-certificate), follows every certificate it signs, so
   that whatever still trusts only the old CAs keeps working. Within seconds the server issues its
   certificates under the new CAs and the controller-manager publishes the new CA to the pods
   (kube-root-ca.crt); each agent takes the new CAs and certificates within 5 minutes (kasa
   certificate rotate on an agent does it now). The token files get the new CA's hash (the secrets
   stay); tokens made before keep joining until step 2.
2. kasa certificate rotate-ca --finish, once every node took the new CAs (it checks, and says which
   have not), drops the old CAs: nothing kasa runs trusts them any more, and a certificate signed
   with an old key is refused. Copy the admin kubeconfig again where you keep copies, and give new
   nodes the new token.

It runs on a server, as root, while the server runs; with several servers on one datastore, on any
one of them (the others take the new CAs from the datastore within 10 s).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := dataDir()
			if err != nil {
				return err
			}
			d := datadir.New(dir).Server()
			out := cmd.OutOrStdout()
			if finish {
				client, err := adminClient(d)
				if err != nil {
					return err
				}
				if err := server.FinishCARotation(cmd.Context(), d, client, force); err != nil {
					return err
				}
				fmt.Fprintln(out, "finished the rotation: the old CAs are no longer trusted; the server and the agents take the CA files within 5 minutes")
				return nil
			}
			if force {
				return errors.New("--force goes with --finish")
			}
			if err := server.RotateCAs(d, time.Now()); err != nil {
				return err
			}
			fmt.Fprintln(out, "made new CAs; the old ones stay trusted until kasa certificate rotate-ca --finish")
			if err := waitIssued(cmd.Context(), d, wait); err != nil {
				fmt.Fprintf(out, "%v: it issues them when it runs\n", err)
			} else {
				fmt.Fprintln(out, "the server issued its certificates under the new CAs")
			}
			if _, err := os.Stat(d.Token()); err == nil {
				fmt.Fprintf(out, "the server token in %s names the new CA (its secret is unchanged)\n", d.Token())
			}
			fmt.Fprintln(out, "next: wait until every agent took the new CAs (within 5 minutes), then run kasa certificate rotate-ca --finish")
			return nil
		},
	}
	dataDir = settings.BindDataDir(cmd.Flags(), os.LookupEnv)
	cmd.Flags().BoolVar(&finish, "finish", false, "drop the old CAs, once every node took the new ones")
	cmd.Flags().BoolVar(&force, "force", false, "with --finish: do not check that every node took the new CAs")
	cmd.Flags().DurationVar(&wait, "wait", 2*time.Minute, "how long to wait for the running server to issue its certificates under the new CAs")
	return cmd
}

// waitIssued waits until the API server's serving certificate is signed
// by the first CA of ca.crt.
func waitIssued(ctx context.Context, d datadir.Server, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		ca, err := pki.ReadCert(d.TLS("ca.crt"))
		if err != nil {
			return err
		}
		if cert, err := pki.ReadCert(d.TLS("serving-kube-apiserver.crt")); err == nil && cert.CheckSignatureFrom(ca) == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the server did not issue its certificates under the new CAs within %s (is it running?)", wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// adminClient is a client of the server's API with the admin kubeconfig.
func adminClient(d datadir.Server) (kubernetes.Interface, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", d.Cred("admin.kubeconfig"))
	if err != nil {
		return nil, fmt.Errorf("the admin kubeconfig: %w (is this a server?)", err)
	}
	return kubernetes.NewForConfig(rc)
}
