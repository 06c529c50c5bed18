package server

import (
	"maps"
	"net/netip"
	"testing"

	"github.com/spf13/pflag"

	"github.com/kasa-io/kasa/pkg/config"
)

// TestSharedSettings: the settings every server of a cluster must share
// are named by kasa server's flags (a difference is reported as --name),
// carry the settings' values, and list the disabled add-ons the same way
// whatever order --disable gives them in.
func TestSharedSettings(t *testing.T) {
	fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
	(&config.ServerOptions{}).AddFlags(fs)
	got := sharedSettings(serverConfig(t, "--cluster-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/16",
		"--cluster-domain", "corp.example", "--flannel-backend", "host-gw", "--disable", "traefik,coredns",
		"--secrets-encryption-provider", "aesgcm", "--disable-network-policy"))
	want := map[string]string{
		"cluster-cidr":                "10.244.0.0/16",
		"service-cidr":                "10.96.0.0/16",
		"cluster-dns":                 "10.96.0.10",
		"cluster-domain":              "corp.example",
		"flannel-backend":             "host-gw",
		"disable":                     "coredns,traefik",
		"disable-network-policy":      "true",
		"secrets-encryption":          "true",
		"secrets-encryption-provider": "aesgcm",
	}
	if !maps.Equal(got, want) {
		t.Errorf("%v, want %v", got, want)
	}
	for name := range got {
		if fs.Lookup(name) == nil {
			t.Errorf("%q is not a flag of kasa server", name)
		}
	}
	if other := sharedSettings(serverConfig(t, "--disable", "coredns", "--disable", "traefik", "--cluster-cidr", "10.244.0.0/16",
		"--service-cidr", "10.96.0.0/16", "--cluster-domain", "corp.example", "--flannel-backend", "host-gw", "--secrets-encryption-provider=aesgcm", "--disable-network-policy=true")); !maps.Equal(other, got) {
		t.Errorf("the same settings given otherwise: %v, want %v", other, got)
	}
	if d := sharedSettings(serverConfig(t)); d["disable"] != "" || d["cluster-dns"] != "10.43.0.10" || d["flannel-backend"] != "vxlan" ||
		d["disable-network-policy"] != "false" {
		t.Errorf("defaults: %v", d)
	}
}

// TestNodeIP: a server's node has the first --node-ip, else the advertised
// address (the default route's, else loopback).
func TestNodeIP(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "192.0.2.10"},
		{[]string{"--node-ip", "192.0.2.11,2001:db8::11", "--advertise-address", "198.51.100.1"}, "192.0.2.11"},
		{[]string{"--advertise-address", "198.51.100.1"}, "192.0.2.10"},
	} {
		if got := nodeIP(serverConfig(t, tt.args...)); got != netip.MustParseAddr(tt.want) {
			t.Errorf("%v: %s, want %s", tt.args, got, tt.want)
		}
	}
	// Without a default route and --node-ip, the advertised address.
	cfg := serverConfig(t, "--advertise-address", "198.51.100.1")
	cfg.NodeIPs = nil
	if got := nodeIP(cfg); got != netip.MustParseAddr("198.51.100.1") {
		t.Errorf("no node IP: %s, want the advertised address", got)
	}
}
