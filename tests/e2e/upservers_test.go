//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kasa-io/kasa/pkg/pki"
	"github.com/kasa-io/kasa/tests/harness"
	"github.com/kasa-io/kasa/tests/harness/hosts"
)

// datastoreCAPath is where TestE2EUpServers puts the PostgreSQL server's
// CA on each server host, for --datastore-cafile.
const datastoreCAPath = "/etc/kasa-test/datastore-ca.crt"

// TestE2EUpServers: kasa up with a cluster file of three servers, one agent
// and a datastore endpoint (PostgreSQL from Debian on a host of its own,
// reached only over TLS checked against its CA) brings the cluster up:
// the first server, then the others, then the agent; every connection of
// kasa to the database is encrypted; the first server killed leaves
// kubectl through another working and a new Deployment running; a re-run
// changes nothing; kasa down leaves the hosts clean.
func TestE2EUpServers(t *testing.T) {
	cl := newClusterWith(t, hosts.Prefix+"e2e-upha", "172.31.250.0/24", func(_, image string) map[string]string {
		return map[string]string{inHostDataDir + "/agent/images/web.tar": image}
	}, "srv2", "srv3", "ag1", "pg")
	ctx := context.Background()
	srv, srv2, srv3, ag1, pg := cl.srv, cl.agents["srv2"], cl.agents["srv3"], cl.agents["ag1"], cl.agents["pg"]
	servers := []*hosts.Host{srv, srv2, srv3}
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	caPEM := startPostgresIn(t, pg)
	for _, h := range servers {
		if err := h.WriteFile(ctx, datastoreCAPath, caPEM, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	home := t.TempDir()
	authorizeWorkstation(t, home, srv, srv2, srv3, ag1)
	flags := "[--data-dir, " + inHostDataDir + ", --resolv-conf, " + hosts.PodResolvConf + "]"
	serverFlags := "[--data-dir, " + inHostDataDir + ", --resolv-conf, " + hosts.PodResolvConf +
		", --disable, \"traefik,metrics-server\", --datastore-cafile, " + datastoreCAPath + "]"
	line := func(h *hosts.Host, role, flags string) string {
		return "  - {name: " + h.Name + ", role: " + role + ", ssh: {address: " + h.IP + "}, installFlags: " + flags + "}\n"
	}
	// The password comes from the workstation's environment, as a user
	// keeps it out of the file.
	spec := "apiVersion: kasa.io/v1alpha1\nkind: Cluster\nmetadata:\n  name: e2e-upha\nspec:\n" +
		"  datastoreEndpoint: postgres://kasa:${KASA_E2E_DB_PASSWORD}@" + pg.IP + ":5432/kasa?sslmode=verify-full\n" +
		"  hosts:\n" + line(srv, "server", serverFlags) + line(srv2, "server", serverFlags) + line(srv3, "server", serverFlags) +
		line(ag1, "agent", flags)
	clusterFile := filepath.Join(home, "cluster.yaml")
	if err := os.WriteFile(clusterFile, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "HOME="+home, "SSH_AUTH_SOCK=", "KASA_E2E_DB_PASSWORD="+dbPassword)
	kasa := func(args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	started := time.Now()
	out, err := kasa("up", "-f", clusterFile, "--accept-new-host-keys")
	if err != nil {
		t.Fatalf("kasa up: %v\n%s", err, out)
	}
	t.Logf("kasa up, three servers on PostgreSQL and an agent, %s:\n%s", time.Since(started).Round(100*time.Millisecond), out)
	if strings.Contains(out, dbPassword) {
		t.Error("kasa up printed the datastore's password")
	}
	rc, err := clientcmd.BuildConfigFromFlags("", filepath.Join(home, ".kube", "config"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	all := []string{"srv", "srv2", "srv3", "ag1"}
	waitFor(t, 3*time.Minute, "four nodes Ready", func() error { return nodesReady(ctx, c, all...) })

	// One CA, and every connection of kasa to the database over TLS.
	ca := cacertsOf(t, srv)
	for _, h := range servers[1:] {
		if cacertsOf(t, h) != ca {
			t.Errorf("server %s hands out another CA than srv's", h.Name)
		}
	}
	conns := func(ssl bool) string {
		q := fmt.Sprintf("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = 'kasa' AND s.ssl = %v", ssl)
		return strings.TrimSpace(mustExec(t, pg, "runuser", "-u", "postgres", "--", "psql", "-tAc", q))
	}
	if enc, plain := conns(true), conns(false); enc == "0" || plain != "0" {
		t.Errorf("kasa's connections to PostgreSQL: %s over TLS, %s without: want all over TLS", enc, plain)
	} else {
		t.Logf("kasa's connections to PostgreSQL: %s, all over TLS", enc)
	}
	for _, h := range servers {
		if journal := h.Journal(ctx, "kasa", 20000); strings.Contains(journal, dbPassword) {
			t.Errorf("server %s logged the datastore's password", h.Name)
		}
		if ps := mustExec(t, h, "ps", "-eo", "args"); strings.Contains(ps, dbPassword) {
			t.Errorf("server %s: the datastore's password shows in the process list", h.Name)
		}
	}

	// The first server killed: kubectl through another keeps working and
	// a new Deployment runs on the agent.
	mustExec(t, srv, "systemctl", "kill", "--kill-whom=main", "--signal=SIGKILL", "kasa")
	killed := time.Now()
	rc2 := *rc
	rc2.Host = "https://" + srv2.IP + ":6443"
	c2, err := kubernetes.NewForConfig(&rc2)
	if err != nil {
		t.Fatal(err)
	}
	if err := createPinnedDeployment(ctx, c2, "after-kill", "ag1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "after-kill running", func() error { return deploymentAvailable(ctx, c2, "default", "after-kill") })
	t.Logf("with srv killed: a Deployment running through srv2 after %s", time.Since(killed).Round(100*time.Millisecond))
	restarted := time.Now()
	mustExec(t, srv, "systemctl", "start", "kasa")
	waitFor(t, 4*time.Minute, "srv back", func() error { return renewedSince(ctx, c2, "srv", restarted) })
	waitFor(t, 2*time.Minute, "four nodes Ready", func() error { return nodesReady(ctx, c2, all...) })

	// A re-run changes nothing.
	started = time.Now()
	out, err = kasa("up", "-f", clusterFile)
	if err != nil || strings.Count(out, "ok (unchanged)") != 4 {
		t.Fatalf("the second kasa up: %v, want four hosts unchanged:\n%s", err, out)
	}
	t.Logf("kasa up again, nothing to change, %s", time.Since(started).Round(100*time.Millisecond))
	if n, err := c2.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
		t.Error(err)
	} else if len(n.Items) != 4 {
		t.Errorf("%d nodes after the re-run, want 4", len(n.Items))
	}

	out, err = kasa("down", "-f", clusterFile)
	if err != nil {
		t.Fatalf("kasa down: %v\n%s", err, out)
	}
	for _, h := range []*hosts.Host{ag1, srv3, srv2, srv} {
		checkHostClean(t, h)
	}
}

// startPostgresIn starts Debian's PostgreSQL in host h, reachable on the
// host's address over TLS only (a server certificate for that address, of
// a CA that the test makes), with a user kasa (the password dbPassword)
// that may create the database kasa, which the first server does. It
// returns the CA's certificate.
func startPostgresIn(t *testing.T, h *hosts.Host) []byte {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	now := time.Now()
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), "kasa-e2e-db-ca", pki.ECDSAP256, now)
	if err != nil {
		t.Fatal(err)
	}
	leaf := pki.Leaf{CommonName: h.IP, Server: true, IPs: []net.IP{net.ParseIP(h.IP)},
		CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key")}
	if _, err := ca.Ensure(leaf, now); err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	const conf = "/etc/postgresql/15/main"
	for _, f := range []struct{ src, dst string }{{leaf.CertFile, conf + "/kasa-test.crt"}, {leaf.KeyFile, conf + "/kasa-test.key"}} {
		b, err := os.ReadFile(f.src)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.WriteFile(ctx, f.dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	settings := "listen_addresses = '*'\nssl = on\nssl_cert_file = '" + conf + "/kasa-test.crt'\nssl_key_file = '" + conf + "/kasa-test.key'\n"
	if err := h.WriteFile(ctx, conf+"/conf.d/kasa-test.conf", []byte(settings), 0o644); err != nil {
		t.Fatal(err)
	}
	// Over the network, only TLS: a plain connection finds no line.
	hba := "local all postgres peer\nhostssl all kasa 0.0.0.0/0 scram-sha-256\n"
	if err := h.WriteFile(ctx, conf+"/pg_hba.conf", []byte(hba), 0o640); err != nil {
		t.Fatal(err)
	}
	mustExec(t, h, "chown", "postgres:postgres", conf+"/kasa-test.crt", conf+"/kasa-test.key", conf+"/pg_hba.conf")
	mustExec(t, h, "systemctl", "start", "postgresql")
	waitFor(t, time.Minute, "PostgreSQL in "+h.Name, func() error {
		_, stderr, err := h.Exec(ctx, "runuser", "-u", "postgres", "--", "psql", "-tAc", "SELECT 1")
		if err != nil {
			return fmt.Errorf("%w: %s", err, stderr)
		}
		return nil
	})
	sql := fmt.Sprintf("CREATE USER kasa PASSWORD '%s' CREATEDB", dbPassword)
	if err := h.WriteFile(ctx, "/root/kasa-user.sql", []byte(sql), 0o600); err != nil {
		t.Fatal(err)
	}
	mustExec(t, h, "sh", "-c", "runuser -u postgres -- psql -v ON_ERROR_STOP=1 < /root/kasa-user.sql")
	return caPEM
}
