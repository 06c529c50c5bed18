// Package certificate is `kasa certificate`: the certificates of a server
// or agent, their expiry and their renewal. It maps its flags to pkg/pki
// and pkg/agent.
package certificate

import (
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

	"github.com/kasa-io/kasa/pkg/agent"
	"github.com/kasa-io/kasa/pkg/cli/output"
	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/datadir"
	"github.com/kasa-io/kasa/pkg/pki"
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
	cmd.AddCommand(checkCommand(), rotateCommand())
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
	dataDir = config.BindDataDir(cmd.Flags(), os.LookupEnv)
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
	dataDir = config.BindDataDir(cmd.Flags(), os.LookupEnv)
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
