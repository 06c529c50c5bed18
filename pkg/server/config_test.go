package server

import (
	"net/netip"
	"testing"

	"github.com/spf13/pflag"

	"github.com/kasa-io/kasa/pkg/config"
)

// testHost is the machine the tests' settings default to.
var testHost = config.Host{Hostname: "Node-1", DefaultIP: netip.MustParseAddr("192.0.2.10")}

// serverConfig builds the settings the way kasa server does: its flags,
// parsed from args, then Complete (without the environment and config
// files, which pkg/config's and pkg/cli/server's tests cover).
func serverConfig(t *testing.T, args ...string) *config.Server {
	t.Helper()
	var o config.ServerOptions
	fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	cfg, err := o.Complete(testHost)
	if err != nil {
		t.Fatalf("kasa server %v: %v", args, err)
	}
	return cfg
}
