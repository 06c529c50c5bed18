package server

import (
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/kasa-io/kasa/pkg/agent"
	"github.com/kasa-io/kasa/pkg/component"
	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/join"
)

// nodeComponents returns this machine's node parts, to run after the
// control plane, with certificates signed here by the cluster CA.
func nodeComponents(cfg *config.Server, p Paths, c *certs, serverURL string, env []string, log *slog.Logger, now time.Time) ([]component.Component, error) {
	nodeIP := cfg.AdvertiseAddress
	if len(cfg.NodeIPs) > 0 {
		nodeIP = cfg.NodeIPs[0]
	}
	if err := ensureNodeCerts(cfg, agent.NewPaths(cfg.DataDir), c, now); err != nil {
		return nil, err
	}
	return agent.Components(agent.Node{
		DataDir:        cfg.DataDir,
		Name:           cfg.NodeName,
		IP:             nodeIP,
		Agent:          cfg.Agent,
		ServerURL:      serverURL,
		CAFile:         p.TLS("ca.crt"),
		ClusterCIDR:    cfg.ClusterCIDR.String(),
		ClusterDNS:     cfg.ClusterDNS.String(),
		ClusterDomain:  cfg.ClusterDomain,
		FlannelBackend: cfg.FlannelBackend,
		LocalStorage:   !slices.Contains(cfg.Disable, "local-storage"),
		Env:            env,
		Log:            log,
	})
}

// ensureNodeCerts makes this machine's node certificates, as the join
// endpoint makes an agent's.
func ensureNodeCerts(cfg *config.Server, np agent.Paths, c *certs, now time.Time) error {
	var ips []net.IP
	for _, a := range append(cfg.NodeIPs, cfg.AdvertiseAddress) {
		ips = append(ips, net.IP(a.AsSlice()))
	}
	for _, l := range join.NodeCerts(cfg.NodeName, ips) {
		l.CertFile, l.KeyFile = np.TLS(l.CertFile), np.TLS(l.KeyFile)
		if _, err := c.CA.Ensure(l, now); err != nil {
			return fmt.Errorf("node certificate %s: %w", l.CertFile, err)
		}
	}
	return nil
}
