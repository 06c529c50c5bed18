package server

import (
	"net/netip"
	"testing"

	"github.com/kasa-io/kasa/pkg/addons"
	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/join"
)

func TestClusterSettings(t *testing.T) {
	cfg := &config.Server{
		ClusterCIDR:    netip.MustParsePrefix("10.42.0.0/16"),
		ServiceCIDR:    netip.MustParsePrefix("10.43.0.0/16"),
		ClusterDNS:     netip.MustParseAddr("10.43.0.10"),
		ClusterDomain:  "cluster.local",
		FlannelBackend: "host-gw",
		Disable:        addons.NewSet(addons.Traefik),
		NodePortRange:  "30000-32767",
	}
	want := join.Cluster{ClusterCIDR: "10.42.0.0/16", ServiceCIDR: "10.43.0.0/16", ClusterDNS: "10.43.0.10",
		ClusterDomain: "cluster.local", FlannelBackend: "host-gw", LocalStorage: true, NodePortRange: "30000-32767"}
	if got := clusterSettings(cfg); got != want {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	// --disable local-storage: no node runs the local-path volumes.
	cfg.Disable.Add(addons.LocalStorage)
	want.LocalStorage = false
	if got := clusterSettings(cfg); got != want {
		t.Errorf("with local-storage disabled: got %+v\nwant %+v", got, want)
	}
	// --disable-network-policy: no node enforces policies.
	cfg.DisableNetworkPolicy = true
	want.DisableNetworkPolicy = true
	if got := clusterSettings(cfg); got != want {
		t.Errorf("with network policy disabled: got %+v\nwant %+v", got, want)
	}
}
