package server

import (
	"github.com/kasa-io/kasa/pkg/addons"
	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/join"
)

// clusterSettings are the cluster-wide settings every node runs with,
// built once from the server's: the join endpoint sends them to joining
// agents, and this server's own node runs with the same value.
func clusterSettings(cfg *config.Server) join.Cluster {
	return join.Cluster{
		ClusterCIDR:          cfg.ClusterCIDR.String(),
		ServiceCIDR:          cfg.ServiceCIDR.String(),
		ClusterDNS:           cfg.ClusterDNS.String(),
		ClusterDomain:        cfg.ClusterDomain,
		FlannelBackend:       cfg.FlannelBackend,
		LocalStorage:         !cfg.Disable.Has(addons.LocalStorage),
		NodePortRange:        cfg.NodePortRange,
		DisableNetworkPolicy: cfg.DisableNetworkPolicy,
	}
}
