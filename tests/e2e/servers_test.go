//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kasa-io/kasa/pkg/join"
	"github.com/kasa-io/kasa/pkg/token"
	"github.com/kasa-io/kasa/tests/harness"
	"github.com/kasa-io/kasa/tests/harness/hosts"
)

// serversNetwork is the network of TestE2EServers, on its own subnet.
const (
	serversNetwork = hosts.Prefix + "e2e-servers"
	serversSubnet  = "172.31.249.0/24"
	// dbPassword is the password of the datastore's user kasa: a test's
	// own, on a host of the test's own network.
	dbPassword = "e2e-db-pw-5f0c8a41d2"
)

// TestE2EServers: three servers on one MariaDB (on a host of its own) and
// an agent, each a host with its own address and file system. The servers
// share one CA; a token made on one joins the agent through another; a
// server killed, and another stopped, leaves the cluster working (kubectl
// through the others, the agent Ready, a new Deployment running, the
// leader leases moved) and rejoins when started again; a fourth server
// with a wrong token or another cluster CIDR is refused and changes
// nothing; and the servers ride out 30 s without MariaDB
// (datastoreOutage).
func TestE2EServers(t *testing.T) {
	cl := newCluster(t, serversNetwork, serversSubnet, "srv2", "srv3", "ag1", "db")
	ctx := context.Background()
	srv, srv2, srv3, ag1, db := cl.srv, cl.agents["srv2"], cl.agents["srv3"], cl.agents["ag1"], cl.agents["db"]
	servers := []*hosts.Host{srv, srv2, srv3}

	dsn := startMariaDBIn(t, db)
	serverArgs := []string{"server", "--data-dir", inHostDataDir, "--resolv-conf", hosts.PodResolvConf, "--disable", "traefik,metrics-server"}
	env := []string{"KASA_DATASTORE_ENDPOINT=" + dsn, "KASA_AGENT_TOKEN=e2e-agent-secret-0123456789"}

	// The first server makes the cluster and its token; the second joins
	// with that full token, the third with its bare secret.
	started := time.Now()
	installUnit(t, srv, "kasa", serverArgs, env)
	mustExec(t, srv, "systemctl", "start", "kasa")
	cl.c = cl.client()
	waitFor(t, 4*time.Minute, "node srv Ready", func() error { return nodesReady(ctx, cl.c, "srv") })
	t.Logf("first server Ready on MariaDB %s after its start", time.Since(started).Round(100*time.Millisecond))
	serverToken := strings.TrimSpace(mustExec(t, srv, "cat", inHostDataDir+"/server/token"))
	st, err := token.Parse(serverToken)
	if err != nil || st.CAHash == "" {
		t.Fatalf("the server's token: %v", err)
	}
	started = time.Now()
	installUnit(t, srv2, "kasa", serverArgs, append(env, "KASA_TOKEN="+serverToken))
	// srv3 names srv with --server, which checks that the datastore holds
	// srv's cluster.
	installUnit(t, srv3, "kasa", append(serverArgs, "--server", "https://"+srv.IP+":6443"), append(env, "KASA_TOKEN="+st.Secret))
	mustExec(t, srv2, "systemctl", "start", "kasa")
	mustExec(t, srv3, "systemctl", "start", "kasa")
	waitFor(t, 5*time.Minute, "three servers Ready", func() error { return nodesReady(ctx, cl.c, "srv", "srv2", "srv3") })
	t.Logf("two more servers Ready %s after their start", time.Since(started).Round(100*time.Millisecond))

	// One CA: every server hands out the same /cacerts and keeps the same
	// files; each one's API answers with its own client.
	caOf := func(h *hosts.Host) string { return cacertsOf(t, h) }
	ca := caOf(srv)
	for _, h := range servers[1:] {
		if got := caOf(h); got != ca {
			t.Errorf("server %s hands out another CA than srv's:\n%s\nwant\n%s", h.Name, got, ca)
		}
		for _, f := range []string{"tls/ca.crt", "tls/client-ca.crt", "tls/kubelet-ca.crt", "tls/request-header-ca.crt", "tls/service-account.key"} {
			if a, b := mustExec(t, srv, "sha256sum", inHostDataDir+"/server/"+f), mustExec(t, h, "sha256sum", inHostDataDir+"/server/"+f); strings.Fields(a)[0] != strings.Fields(b)[0] {
				t.Errorf("server %s: %s differs from srv's", h.Name, f)
			}
		}
		if tok := strings.TrimSpace(mustExec(t, h, "cat", inHostDataDir+"/server/token")); tok != serverToken {
			t.Errorf("server %s keeps another token than srv's", h.Name)
		}
	}
	clients := map[string]kubernetes.Interface{"srv": cl.c}
	for _, h := range servers[1:] {
		c, err := h.Client(ctx, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		clients[h.Name] = c
	}
	for _, h := range servers {
		if n, err := clients[h.Name].CoreV1().Nodes().Get(ctx, h.Name, metav1.GetOptions{}); err != nil || n.Labels["node-role.kubernetes.io/control-plane"] != "true" {
			t.Errorf("server %s through its own API: %v (labels %v)", h.Name, err, n.Labels)
		}
	}
	for _, h := range servers {
		if journal := h.Journal(ctx, "kasa", 20000); strings.Contains(journal, dbPassword) || strings.Contains(journal, st.Secret) {
			t.Errorf("server %s logged the datastore's password or the token's secret", h.Name)
		}
		if ps := mustExec(t, h, "ps", "-eo", "args"); strings.Contains(ps, dbPassword) {
			t.Errorf("server %s: the datastore's password shows in the process list", h.Name)
		}
	}

	// A token made on srv2 joins the agent through srv3.
	bootstrap := strings.TrimSpace(mustExec(t, srv2, "kasa", "token", "create", "--ttl", "1h", "--description", "e2e servers"))
	installUnit(t, ag1, "kasa-agent", []string{"agent", "--data-dir", inHostDataDir, "--resolv-conf", hosts.PodResolvConf},
		[]string{"KASA_URL=https://" + srv3.IP + ":6443", "KASA_TOKEN=" + bootstrap})
	mustExec(t, ag1, "systemctl", "start", "kasa-agent")
	all := []string{"srv", "srv2", "srv3", "ag1"}
	waitFor(t, 3*time.Minute, "four nodes Ready", func() error { return nodesReady(ctx, cl.c, all...) })

	// Each server stopped once, the leases' holder first (SIGKILL), then
	// the server the agent joined through (a clean stop).
	holder := leaseHolder(t, ctx, cl.c, "kube-controller-manager")
	first := map[string]*hosts.Host{"srv": srv, "srv2": srv2, "srv3": srv3}[holder]
	if first == nil {
		t.Fatalf("the controller-manager's lease is held by %q, not a server", holder)
	}
	second := srv3
	if first == srv3 {
		second = srv2
	}
	for i, stop := range []struct {
		h    *hosts.Host
		how  string
		args []string
	}{
		{first, "SIGKILL", []string{"systemctl", "kill", "--kill-whom=main", "--signal=SIGKILL", "kasa"}},
		{second, "a clean stop", []string{"systemctl", "stop", "kasa"}},
	} {
		var other *hosts.Host
		for _, h := range servers {
			if h != stop.h && other == nil {
				other = h
			}
		}
		c := clients[other.Name]
		stopped := time.Now()
		mustExec(t, stop.h, stop.args...)
		waitFor(t, 30*time.Second, "kasa stopped in "+stop.h.Name, func() error {
			if out, _, _ := stop.h.Exec(ctx, "pgrep", "-x", "kasa"); strings.TrimSpace(out) != "" {
				return fmt.Errorf("kasa still runs: %s", out)
			}
			return nil
		})
		// kubectl through the others: a new Deployment runs.
		name := fmt.Sprintf("after-stop-%d", i)
		if err := createPinnedDeployment(ctx, c, name, "ag1"); err != nil {
			t.Fatalf("with %s stopped (%s), through %s: %v", stop.h.Name, stop.how, other.Name, err)
		}
		waitFor(t, 2*time.Minute, name+" running", func() error { return deploymentAvailable(ctx, c, "default", name) })
		t.Logf("with server %s stopped (%s): deployment %s running through %s after %s",
			stop.h.Name, stop.how, name, other.Name, time.Since(stopped).Round(100*time.Millisecond))
		// The leader leases held by the stopped server move to another.
		for _, lease := range []string{"kube-controller-manager", "kube-scheduler"} {
			waitFor(t, 90*time.Second, lease+" lease moved from "+stop.h.Name, func() error {
				if h := leaseHolder(t, ctx, c, lease); h == stop.h.Name {
					return fmt.Errorf("still held by %s", h)
				}
				return nil
			})
		}
		// The agent keeps renewing its node lease, and stays Ready.
		waitFor(t, time.Minute, "ag1 renews its lease with "+stop.h.Name+" stopped", func() error {
			return renewedSince(ctx, c, "ag1", stopped.Add(time.Second))
		})
		if n, err := c.CoreV1().Nodes().Get(ctx, "ag1", metav1.GetOptions{}); err != nil || !ready(n) {
			t.Errorf("ag1 with %s stopped: %v, Ready %v", stop.h.Name, err, err == nil && ready(n))
		}
		// Started again, it rejoins without help: its kubelet renews its
		// lease after the start, and its API answers.
		restarted := time.Now()
		mustExec(t, stop.h, "systemctl", "start", "kasa")
		waitFor(t, 4*time.Minute, stop.h.Name+" back", func() error {
			if err := renewedSince(ctx, c, stop.h.Name, restarted); err != nil {
				return err
			}
			_, err := clients[stop.h.Name].CoreV1().Nodes().Get(ctx, stop.h.Name, metav1.GetOptions{})
			return err
		})
		waitFor(t, 2*time.Minute, "four nodes Ready", func() error { return nodesReady(ctx, c, all...) })
		t.Logf("server %s back %s after its start", stop.h.Name, time.Since(restarted).Round(100*time.Millisecond))
	}

	// A fourth server, in host db, with a wrong token or another cluster
	// CIDR: refused, naming the cause; the cluster unchanged.
	nodesBefore := nodeNames(t, ctx, cl.c)
	fourth := func(tok string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		cmd := append([]string{"env", "KASA_TOKEN=" + tok, "KASA_DATASTORE_ENDPOINT=" + dsn, "kasa", "server", "--data-dir", inHostDataDir, "--resolv-conf", hosts.PodResolvConf}, args...)
		out, stderr, err := db.Exec(ctx, cmd...)
		if err == nil {
			t.Fatalf("a fourth server with %v succeeded:\n%s%s", args, out, stderr)
		}
		if strings.Contains(out+stderr, dbPassword) {
			t.Errorf("a refused fourth server printed the datastore's password")
		}
		// kine logs around it; the error is kasa's own line.
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		for i := len(lines) - 1; i >= 0; i-- {
			if strings.HasPrefix(lines[i], "kasa: ") {
				return lines[i]
			}
		}
		return lines[len(lines)-1]
	}
	wrong := st
	wrong.Secret = "not-the-cluster-secret-123"
	if last := fourth(wrong.String()); !strings.Contains(last, "--token") || !strings.Contains(last, "another") {
		t.Errorf("a fourth server with a wrong token: %s", last)
	}
	if last := fourth(serverToken, "--cluster-cidr", "10.99.0.0/16"); !strings.Contains(last, `--cluster-cidr is "10.99.0.0/16" here but "10.42.0.0/16" in the cluster`) {
		t.Errorf("a fourth server with another cluster CIDR: %s", last)
	}
	if got := nodeNames(t, ctx, cl.c); got != nodesBefore {
		t.Errorf("nodes after the refused servers: %s, want %s", got, nodesBefore)
	}
	for _, h := range servers {
		if got := caOf(h); got != ca {
			t.Errorf("server %s hands out another CA after the refused servers", h.Name)
		}
	}

	datastoreOutage(t, ctx, db, servers, clients)
}

// datastoreOutage stops the servers' MariaDB for 30 s while a writer
// creates ConfigMaps through one server: every server's /readyz fails and
// its journal names the datastore's address, the servers keep running
// (the same main process), and when MariaDB is back they are ready again
// on their own, the leader leases are renewed, a new Deployment runs, and
// every write acknowledged before and during the outage is there.
func datastoreOutage(t *testing.T, ctx context.Context, db *hosts.Host, servers []*hosts.Host, clients map[string]kubernetes.Interface) {
	t.Helper()
	mainPID := func(h *hosts.Host) string {
		return strings.TrimSpace(mustExec(t, h, "systemctl", "show", "-P", "MainPID", "kasa"))
	}
	pids := map[string]string{}
	for _, h := range servers {
		pids[h.Name] = mainPID(h)
	}
	w := harness.StartWriter(ctx, clients[servers[1].Name], 100*time.Millisecond)
	readyz := func(h *hosts.Host) error {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := clients[h.Name].Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		return err
	}
	time.Sleep(3 * time.Second)

	down := time.Now()
	// Debian enables mariadb.socket, which would start MariaDB again at
	// the servers' next connection.
	mustExec(t, db, "systemctl", "stop", "mariadb.socket", "mariadb.service")
	for _, h := range servers {
		waitFor(t, 30*time.Second, h.Name+"'s /readyz failing without the datastore", func() error {
			if readyz(h) == nil {
				return errors.New("/readyz answers ok")
			}
			return nil
		})
	}
	t.Logf("every server's /readyz failed %s after MariaDB stopped", time.Since(down).Round(100*time.Millisecond))
	time.Sleep(time.Until(down.Add(30 * time.Second)))
	for _, h := range servers {
		if pid := mainPID(h); pid != pids[h.Name] {
			t.Errorf("server %s: kasa's main process changed from %s to %s while the datastore was gone", h.Name, pids[h.Name], pid)
		}
		if journal := h.Journal(ctx, "kasa", 3000); !strings.Contains(journal, db.IP+":3306") {
			t.Errorf("server %s's journal does not name the datastore %s:3306 while it is gone", h.Name, db.IP)
		}
	}

	back := time.Now()
	mustExec(t, db, "systemctl", "start", "mariadb.service")
	for _, h := range servers {
		waitFor(t, 2*time.Minute, h.Name+"'s /readyz ok after the datastore came back", func() error { return readyz(h) })
	}
	t.Logf("every server ready %s after MariaDB was back", time.Since(back).Round(100*time.Millisecond))
	c := clients[servers[0].Name]
	waitFor(t, 2*time.Minute, "the leader leases renewed after the outage", func() error { return harness.LeaderLeasesRenewedAfter(ctx, c, back) })
	t.Logf("both leases renewed %s after MariaDB was back", time.Since(back).Round(100*time.Millisecond))
	time.Sleep(2 * time.Second)
	if acked, err := w.Stop(ctx, 20); err != nil {
		t.Error(err)
	} else {
		t.Logf("%d writes acknowledged, all present", acked)
	}
	for _, h := range servers {
		if pid := mainPID(h); pid != pids[h.Name] {
			t.Errorf("server %s: kasa restarted (main process %s, was %s)", h.Name, pid, pids[h.Name])
		}
	}
	if err := createPinnedDeployment(ctx, c, "after-outage", "ag1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Minute, "after-outage running", func() error { return deploymentAvailable(ctx, c, "default", "after-outage") })
	waitFor(t, 2*time.Minute, "four nodes Ready", func() error { return nodesReady(ctx, c, "srv", "srv2", "srv3", "ag1") })
}

// startMariaDBIn starts Debian's MariaDB in host h, listening on the
// host's address, with a user kasa (the password dbPassword) that may do
// anything in the database kasa, which it does not create: the first
// server does. It returns the DSN.
func startMariaDBIn(t *testing.T, h *hosts.Host) string {
	t.Helper()
	ctx := context.Background()
	if err := h.WriteFile(ctx, "/etc/mysql/mariadb.conf.d/99-kasa.cnf", []byte("[mysqld]\nbind-address = 0.0.0.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sql := fmt.Sprintf("CREATE USER 'kasa'@'%%' IDENTIFIED BY '%s';\nGRANT ALL PRIVILEGES ON kasa.* TO 'kasa'@'%%';\n", dbPassword)
	if err := h.WriteFile(ctx, "/root/kasa-user.sql", []byte(sql), 0o600); err != nil {
		t.Fatal(err)
	}
	mustExec(t, h, "systemctl", "start", "mariadb")
	mustExec(t, h, "sh", "-c", "mariadb < /root/kasa-user.sql")
	return fmt.Sprintf("mysql://kasa:%s@tcp(%s:3306)/kasa", dbPassword, h.IP)
}

// cacertsOf returns what the server in h hands out at /cacerts.
func cacertsOf(t *testing.T, h *hosts.Host) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		// Only to read the CA that the test then compares.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the body is compared, not trusted
	}}
	resp, err := c.Get("https://" + h.IP + ":6443" + join.CACertsPath)
	if err != nil {
		t.Fatalf("server %s: %v", h.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("server %s: /cacerts: %s %v", h.Name, resp.Status, err)
	}
	return string(b)
}

// leaseHolder returns the node name of the holder of kube-system's lease
// name ("srv2" of "srv2_0d3f...").
func leaseHolder(t *testing.T, ctx context.Context, c kubernetes.Interface, name string) string {
	t.Helper()
	var l *coordinationv1.Lease
	waitFor(t, time.Minute, "the lease "+name, func() error {
		var err error
		l, err = c.CoordinationV1().Leases("kube-system").Get(ctx, name, metav1.GetOptions{})
		if err == nil && (l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "") {
			err = fmt.Errorf("no holder")
		}
		return err
	})
	holder, _, _ := strings.Cut(*l.Spec.HolderIdentity, "_")
	return holder
}

// renewedSince says whether node's kubelet renewed its lease in
// kube-node-lease after t.
func renewedSince(ctx context.Context, c kubernetes.Interface, node string, t time.Time) error {
	l, err := c.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if l.Spec.RenewTime == nil || l.Spec.RenewTime.Time.Before(t) {
		return fmt.Errorf("node %s's lease last renewed %v, before %s", node, l.Spec.RenewTime, t.Format(time.TimeOnly))
	}
	return nil
}

// createPinnedDeployment creates a Deployment of two test image pods on
// node.
func createPinnedDeployment(ctx context.Context, c kubernetes.Interface, name, node string) error {
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       pinnedPod(name, node).Spec,
			},
		},
	}
	_, err := c.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{})
	return err
}

// nodeNames returns the cluster's node names, joined by spaces.
func nodeNames(t *testing.T, ctx context.Context, c kubernetes.Interface) string {
	t.Helper()
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nodes.Items {
		names = append(names, n.Name)
	}
	return strings.Join(names, " ")
}
