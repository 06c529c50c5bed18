package config

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/kasa-io/kasa/pkg/addons"
)

var host = Host{Hostname: "Node-1", DefaultIP: netip.MustParseAddr("192.0.2.10")}

func TestCompleteDefaults(t *testing.T) {
	o, _ := newFlags(t, "--disable-agent")
	s, err := o.Complete(host)
	if err != nil {
		t.Fatal(err)
	}
	if s.NodeName != "node-1" {
		t.Errorf("node name %q: want the host name in lower case", s.NodeName)
	}
	if s.AdvertiseAddress.String() != "192.0.2.10" || s.NodeIPs[0].String() != "192.0.2.10" {
		t.Errorf("addresses: %v %v", s.AdvertiseAddress, s.NodeIPs)
	}
	if s.ClusterDNS.String() != "10.43.0.10" {
		t.Errorf("cluster DNS %v", s.ClusterDNS)
	}
	if s.WriteKubeconfigMode != 0o600 || s.WriteKubeconfig != DefaultKubeconfig {
		t.Errorf("kubeconfig %s %o", s.WriteKubeconfig, s.WriteKubeconfigMode)
	}
}

func TestCompleteErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--cluster-cidr", "10.42.0.0/33"}, "invalid --cluster-cidr \"10.42.0.0/33\""},
		{[]string{"--cluster-cidr", "banana"}, "invalid --cluster-cidr"},
		{[]string{"--service-cidr", "10.43.0.1/16"}, "did you mean 10.43.0.0/16"},
		{[]string{"--cluster-cidr", "10.0.0.0/8", "--service-cidr", "10.43.0.0/16"}, "overlaps"},
		{[]string{"--cluster-dns", "10.99.0.10"}, "outside --service-cidr"},
		{[]string{"--https-listen-port", "70000"}, "invalid --https-listen-port 70000"},
		{[]string{"--bind-address", "nowhere"}, "invalid --bind-address"},
		{[]string{"--node-ip", "1.2.3"}, "invalid --node-ip"},
		{[]string{"--write-kubeconfig-mode", "0999"}, "invalid --write-kubeconfig-mode"},
		{[]string{"--service-node-port-range", "5-1"}, "invalid --service-node-port-range"},
		{[]string{"--disable", "traefik,kafka"}, "invalid --disable \"kafka\""},
		{[]string{"--kube-apiserver-arg", "=1"}, "invalid --kube-apiserver-arg"},
		{[]string{"--token", "a", "--token-file", "/x"}, "both set"},
		{[]string{"--token", "has space"}, "white space"},
		{[]string{"--server", "https://srv:6443", "--token", "secret-0123456789abcdef"}, "this one has SQLite, its own: give the cluster's --datastore-endpoint"},
		{[]string{"--server", "https://srv:6443", "--datastore-endpoint", "mysql://u:p@tcp(db:3306)/kasa"}, "--server: give the cluster's server token"},
		{[]string{"--server", "http://srv:6443"}, "invalid --server"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			o, _ := newFlags(t, append(tt.args, "--disable-agent")...)
			_, err := o.Complete(host)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestDisable: --disable becomes a typed set, its help and its error name
// the add-ons as before the list moved to pkg/addons.
func TestDisable(t *testing.T) {
	o, fs := newFlags(t, "--disable-agent", "--disable", "traefik, local-storage", "--disable", "traefik")
	s, err := o.Complete(host)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Disable.Has(addons.Traefik) || !s.Disable.Has(addons.LocalStorage) || s.Disable.Has(addons.CoreDNS) || len(s.Disable) != 2 {
		t.Errorf("disabled %v, want traefik and local-storage", s.Disable.List())
	}
	const help = "packaged components not to deploy: coredns, servicelb, traefik, local-storage, metrics-server"
	if got := fs.Lookup("disable").Usage; got != help {
		t.Errorf("help %q, want %q", got, help)
	}
	o, _ = newFlags(t, "--disable-agent", "--disable", "coredns,Traefik")
	_, err = o.Complete(host)
	const msg = `invalid --disable "Traefik": the components that can be disabled are coredns, servicelb, traefik, local-storage, metrics-server`
	if err == nil || err.Error() != msg {
		t.Errorf("got %v, want %s", err, msg)
	}
	o, _ = newFlags(t, "--disable-agent")
	if s, err = o.Complete(host); err != nil {
		t.Fatal(err)
	}
	if len(s.Disable) != 0 || s.Disable.Has(addons.ServiceLB) {
		t.Errorf("nothing disabled: got %v", s.Disable.List())
	}
}

func TestCompleteAgent(t *testing.T) {
	o, _ := newFlags(t, "--node-label", "tier=edge", "--node-taint", "dedicated=db:NoSchedule")
	s, err := o.Complete(host)
	if err != nil {
		t.Fatal(err)
	}
	if s.Agent == nil || s.Agent.NodeLabels["tier"] != "edge" || s.FlannelBackend != "vxlan" {
		t.Fatalf("agent settings: %+v", s.Agent)
	}
	o, _ = newFlags(t, "--disable-agent")
	if s, err := o.Complete(host); err != nil || s.Agent != nil {
		t.Fatalf("--disable-agent: %v %+v", err, s)
	}
	for args, want := range map[string]string{
		"--node-label=nokey":          "invalid --node-label",
		"--node-taint=a=b":            "invalid --node-taint",
		"--node-taint=a=b:Sometimes":  "invalid --node-taint",
		"--flannel-backend=wireguard": "invalid --flannel-backend",
		"--kubelet-arg==1":            "invalid --kubelet-arg",
	} {
		o, _ := newFlags(t, args)
		if _, err := o.Complete(host); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", args, err, want)
		}
	}
}

func TestTokenFile(t *testing.T) {
	o, _ := newFlags(t, "--token-file", "/t", "--disable-agent")
	h := host
	h.ReadFile = func(string) ([]byte, error) { return []byte("  abc123\n"), nil }
	s, err := o.Complete(h)
	if err != nil {
		t.Fatal(err)
	}
	if s.Token.Reveal() != "abc123" || s.Token.String() != "<redacted>" {
		t.Fatalf("token %q / %q", s.Token.Reveal(), s.Token)
	}
}

// TestServerURL: --server is kept with the port made explicit, as the
// agent's.
func TestServerURL(t *testing.T) {
	o, _ := newFlags(t, "--disable-agent", "--server", "https://srv.example", "--token", "secret-0123456789abcdef",
		"--datastore-endpoint", "postgres://u:p@db:5432/kasa")
	s, err := o.Complete(host)
	if err != nil {
		t.Fatal(err)
	}
	if s.Server != "https://srv.example:6443" {
		t.Errorf("server %q, want https://srv.example:6443", s.Server)
	}
}

// TestSnapshotsAndRestore: the snapshot and restore flags, as the server
// takes them and as it refuses them.
func TestSnapshotsAndRestore(t *testing.T) {
	o, _ := newFlags(t, "--disable-agent")
	s, err := o.Complete(host)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Snapshots{Cron: "0 */12 * * *", Retention: 5}); s.Snapshots != want || s.RestorePath != "" {
		t.Errorf("defaults: %+v %q, want %+v", s.Snapshots, s.RestorePath, want)
	}
	o, _ = newFlags(t, "--disable-agent", "--cluster-reset", "--cluster-reset-restore-path", "/backup/snap", "--db-snapshot-dir", "/backup")
	if s, err = o.Complete(host); err != nil || s.RestorePath != "/backup/snap" || s.Snapshots.Dir != "/backup" {
		t.Errorf("restore: %v %+v", err, s)
	}
	o, _ = newFlags(t, "--disable-agent", "--datastore-endpoint", "postgres://u:p@db/kasa")
	if s, err = o.Complete(host); err != nil || !s.Snapshots.Disabled {
		t.Errorf("an external datastore: %v; snapshots %+v, want disabled", err, s.Snapshots)
	}
	for args, want := range map[string]string{
		"--cluster-reset":                        "give --cluster-reset-restore-path FILE too",
		"--cluster-reset-restore-path=/s":        "add --cluster-reset",
		"--db-snapshot-schedule-cron=every hour": "invalid --db-snapshot-schedule-cron",
		"--db-snapshot-retention=0":              "invalid --db-snapshot-retention 0",
	} {
		o, _ := newFlags(t, "--disable-agent", args)
		if _, err := o.Complete(host); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", args, err, want)
		}
	}
	o, _ = newFlags(t, "--disable-agent", "--cluster-reset", "--cluster-reset-restore-path", "/s", "--datastore-endpoint", "postgres://u:p@db/kasa")
	if _, err := o.Complete(host); err == nil || !strings.Contains(err.Error(), "restore that database with its own tools") {
		t.Errorf("restore with an external datastore: %v", err)
	}
}
