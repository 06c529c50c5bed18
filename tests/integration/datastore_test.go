//go:build integration

package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	osexec "os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kasa-io/kasa/pkg/pki"
	"github.com/kasa-io/kasa/tests/harness"
)

// mariaPassword is the kasa user's password in the test's MariaDB; no
// server output may show it.
const mariaPassword = "maria-pw-8d1f0c"

// startMariaDB starts a MariaDB of the harness's for the test and
// returns kine's DSN for its database kasa, which does not exist yet.
func startMariaDB(t *testing.T) string {
	t.Helper()
	m, err := harness.StartMariaDB(mariaPassword)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m.DSN("kasa")
}

// TestIntegrationSharedDatastore: servers on one external datastore are
// one cluster. The first server saves the bootstrap data, sealed with its
// token; a second one with that token takes the same CAs and keys and
// serves the same objects; a server with another token, no token or
// another cluster CIDR is refused, naming the cause, and makes nothing.
func TestIntegrationSharedDatastore(t *testing.T) {
	dsn := startMariaDB(t)
	first, second, tok := twoServers(t, "--datastore-endpoint", dsn)
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	free, err := harness.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	const wrongPassword = "wrong-pw-41c9a2"
	for _, c := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"a wrong password", nil, []string{"--datastore-endpoint", strings.Replace(dsn, mariaPassword, wrongPassword, 1)},
			"the datastore refused the user or password of --datastore-endpoint"},
		{"a user without privileges", nil, []string{"--datastore-endpoint", strings.Replace(dsn, "kasa:", "weak:", 1)},
			"the user of --datastore-endpoint lacks privileges"},
		{"an unreachable datastore", nil, []string{"--datastore-endpoint", fmt.Sprintf("mysql://kasa:%s@tcp(127.0.0.1:%d)/kasa", mariaPassword, free[0])},
			"the datastore cannot be reached at the address of --datastore-endpoint"},
		{"another token", []string{"KASA_TOKEN=another-secret-0123456789"}, nil, "--token: the datastore holds a cluster whose server token is another"},
		{"no token", nil, nil, "--token: the datastore holds a cluster already"},
		{"another cluster CIDR", []string{"KASA_TOKEN=" + strings.TrimSpace(string(tok))}, []string{"--cluster-cidr", "10.44.0.0/16"},
			`--cluster-cidr is "10.44.0.0/16" here but "10.42.0.0/16" in the cluster`},
		{"--server with a datastore that holds no cluster", []string{"KASA_TOKEN=" + strings.TrimSpace(string(tok))},
			[]string{"--server", first.URL(), "--datastore-endpoint", strings.TrimSuffix(dsn, "/kasa") + "/kasa_empty"},
			"serves a cluster, but the datastore of --datastore-endpoint holds none"},
	} {
		s, err := harness.NewServer(bin)
		if err != nil {
			t.Fatal(err)
		}
		s.Env = c.env
		s.ExtraArgs = append([]string{"--datastore-endpoint", dsn}, c.args...) // the last one counts
		out, code := runBriefly(t, s, 60*time.Second)
		// kine logs around it; the error is the one line of kasa's own.
		var msg string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "kasa: ") {
				msg += l
			}
		}
		if code == 0 || !strings.Contains(msg, c.want) {
			t.Errorf("%s: exit %d, want a refusal with %q, got:\n%s", c.name, code, c.want, out)
		}
		if strings.Contains(out, mariaPassword) || strings.Contains(out, wrongPassword) {
			t.Errorf("%s: the output shows the datastore's password", c.name)
		}
		if _, err := os.Stat(filepath.Join(s.DataDir, "server", "tls", "ca.crt")); err == nil {
			t.Errorf("%s: the refused server made a CA", c.name)
		}
		s.Close()
	}
	for _, s := range []*harness.Server{first, second} {
		if b, _ := os.ReadFile(s.LogPath()); bytes.Contains(b, []byte(mariaPassword)) {
			t.Errorf("%s's log shows the datastore's password", s.DataDir)
		}
	}
}

// twoServers starts two servers on the datastore that args name, the second
// with --server naming the first, and checks
// that they are one cluster: the same CAs, keys and token, and what is
// written through one is read through the other, with the first's admin
// credentials on the second's address. It returns them and the token.
func twoServers(t *testing.T, args ...string) (first, second *harness.Server, tok []byte) {
	t.Helper()
	first = startServerWith(t, func(s *harness.Server) { s.ExtraArgs = args })
	tok, err := os.ReadFile(filepath.Join(first.DataDir, "server", "token"))
	if err != nil {
		t.Fatal(err)
	}
	// The second joins through --server too, which pins the first's CA
	// and checks that the datastore holds that cluster.
	second = startServerWith(t, func(s *harness.Server) {
		s.ExtraArgs = append([]string{"--server", first.URL()}, args...)
		s.Env = []string{"KASA_TOKEN=" + strings.TrimSpace(string(tok))}
	})

	for _, f := range []string{"tls/ca.crt", "tls/ca.key", "tls/client-ca.crt", "tls/kubelet-ca.crt", "tls/request-header-ca.key", "tls/service-account.key", "token"} {
		a, errA := os.ReadFile(filepath.Join(first.DataDir, "server", f))
		b, errB := os.ReadFile(filepath.Join(second.DataDir, "server", f))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs between the servers (%v, %v)", f, errA, errB)
		}
	}
	// One cluster: what is written through one server is read through the
	// other, with the first's admin credentials on the second's address.
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "shared"}, Data: map[string]string{"k": "v"}}
	if _, err := client(t, first).CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := client(t, second).CoreV1().ConfigMaps("default").Get(ctx, "shared", metav1.GetOptions{})
	if err != nil || got.Data["k"] != "v" {
		t.Fatalf("the second server does not serve the first's ConfigMap: %v %v", got, err)
	}
	rc, err := first.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	rc.Host = second.URL()
	if _, err := kubernetesFor(t, rc).CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Errorf("the first server's admin certificate on the second: %v", err)
	}

	return first, second, tok
}

func kubernetesFor(t *testing.T, rc *rest.Config) *kubernetes.Clientset {
	t.Helper()
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startPostgres runs a PostgreSQL server of Debian's postgresql package in
// a temporary folder, on a free loopback port, that takes only TLS
// connections (hostssl, scram-sha-256) with a certificate of a CA of the
// test's; it returns kine's DSN, which checks the server's name, and the
// CA's file for --datastore-cafile. PostgreSQL refuses to run as root: as
// root, it runs as the package's user postgres.
func startPostgres(t *testing.T) (dsn, caFile string) {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(bins) == 0 {
		t.Fatal("no /usr/lib/postgresql/*/bin/postgres (scripts/install-deps.sh installs postgresql)")
	}
	binDir := filepath.Dir(bins[len(bins)-1])
	dir, err := os.MkdirTemp("", "kasa-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	as := func(name string, args ...string) *osexec.Cmd {
		if os.Geteuid() == 0 {
			return osexec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
		}
		return osexec.Command(name, args...)
	}
	now := time.Now()
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), "kasa-test-db-ca", pki.ECDSAP256, now)
	if err != nil {
		t.Fatal(err)
	}
	leaf := pki.Leaf{CommonName: "127.0.0.1", Server: true, IPs: []net.IP{net.ParseIP("127.0.0.1")},
		CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key")}
	if _, err := ca.Ensure(leaf, now); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		for _, f := range []string{dir, leaf.CertFile, leaf.KeyFile} {
			if err := os.Chown(f, uid, -1); err != nil {
				t.Fatal(err)
			}
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := as(filepath.Join(binDir, "initdb"), "-D", data, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	hba := "local all postgres trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o644); err != nil {
		t.Fatal(err)
	}
	ports, err := harness.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ports[0])
	var log bytes.Buffer
	db := as(filepath.Join(binDir, "postgres"), "-D", data, "-c", "listen_addresses=127.0.0.1", "-c", "port="+port,
		"-c", "unix_socket_directories="+dir, "-c", "ssl=on", "-c", "ssl_cert_file="+leaf.CertFile, "-c", "ssl_key_file="+leaf.KeyFile)
	db.Stdout, db.Stderr = &log, &log
	db.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := db.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-db.Process.Pid, syscall.SIGTERM)
		_ = db.Wait()
	})
	sql := fmt.Sprintf("CREATE USER kasa PASSWORD '%s' CREATEDB", mariaPassword)
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := osexec.Command("psql", "-h", dir, "-p", port, "-U", "postgres", "-c", sql).CombinedOutput()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PostgreSQL did not answer: %v\n%s\n%s", err, out, log.String())
		}
		time.Sleep(300 * time.Millisecond)
	}
	return fmt.Sprintf("postgres://kasa:%s@127.0.0.1:%s/kasa?sslmode=verify-full", mariaPassword, port), filepath.Join(dir, "ca.crt")
}

// TestIntegrationSharedPostgresTLS: two servers are one cluster on a
// PostgreSQL that takes TLS connections only, verified against
// --datastore-cafile; the database is created by the first.
func TestIntegrationSharedPostgresTLS(t *testing.T) {
	dsn, caFile := startPostgres(t)
	first, second, _ := twoServers(t, "--datastore-endpoint", dsn, "--datastore-cafile", caFile)
	for _, s := range []*harness.Server{first, second} {
		if b, _ := os.ReadFile(s.LogPath()); bytes.Contains(b, []byte(mariaPassword)) {
			t.Errorf("%s's log shows the datastore's password", s.DataDir)
		}
	}
}

// TestIntegrationDatastoreOutage: the datastore goes away for 30 s and
// comes back. The server says so (its /readyz fails, its log names the
// datastore's address and the lost leases) and keeps running: its
// controller-manager and scheduler lose their leases and stand for them
// again in the same process. When the datastore is back the server is
// ready again on its own, both leases are renewed, a new Deployment gets
// its ReplicaSet, and every write it acknowledged, before and during the
// outage, is there.
func TestIntegrationDatastoreOutage(t *testing.T) {
	m, err := harness.StartMariaDB(mariaPassword)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	s := startServerWith(t, func(s *harness.Server) { s.ExtraArgs = []string{"--datastore-endpoint", m.DSN("kasa")} })
	c := client(t, s)
	ctx := context.Background()
	started := time.Now()
	// Both leases held and renewed by this server, so the outage takes them.
	if err := harness.Eventually(2*time.Minute, func() error { return harness.LeaderLeasesRenewedAfter(ctx, c, started) }); err != nil {
		t.Fatal(err)
	}
	pid := s.PID()

	// A writer creates ConfigMaps throughout and notes those acknowledged.
	w := harness.StartWriter(ctx, c, 50*time.Millisecond)
	time.Sleep(3 * time.Second)

	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	if err := harness.Eventually(30*time.Second, func() error {
		if ok, _ := s.Readyz(); ok {
			return errors.New("/readyz still answers ok")
		}
		return nil
	}); err != nil {
		t.Errorf("the datastore is gone: %v", err)
	}
	t.Logf("/readyz failed %s after the datastore stopped", time.Since(down).Round(100*time.Millisecond))
	time.Sleep(time.Until(down.Add(30 * time.Second)))
	if !s.Running() {
		t.Fatalf("the server exited while the datastore was gone:\n%s", s.LogTail(40))
	}
	log, err := os.ReadFile(s.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{fmt.Sprintf("127.0.0.1:%d: connect: connection refused", m.Port), "lost its leader lease"} {
		if !bytes.Contains(log, []byte(want)) {
			t.Errorf("the log does not say %q while the datastore is gone", want)
		}
	}

	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	if err := s.WaitReady(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("ready %s after the datastore came back", time.Since(back).Round(100*time.Millisecond))
	if s.PID() != pid || !s.Running() {
		t.Fatal("the server did not keep running through the outage")
	}
	if err := harness.Eventually(2*time.Minute, func() error { return harness.LeaderLeasesRenewedAfter(ctx, c, back) }); err != nil {
		t.Errorf("after the outage: %v\n%s", err, s.LogTail(30))
	}
	t.Logf("both leases renewed %s after the datastore came back", time.Since(back).Round(100*time.Millisecond))
	time.Sleep(2 * time.Second) // a few writes after the outage too
	// Every acknowledged write, before, during and after the outage, is there.
	if acked, err := w.Stop(ctx, 20); err != nil {
		t.Error(err)
		// kine logs a revision its poller skipped, which the cache never gets.
		if b, rerr := os.ReadFile(s.LogPath()); rerr == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, "GAP") || strings.Contains(l, "written-") {
					t.Log(l)
				}
			}
		}
	} else {
		t.Logf("%d writes acknowledged, all present", acked)
	}

	// The controller-manager acts again.
	if _, err := c.AppsV1().Deployments("default").Create(ctx, deploymentOf("after-outage", 1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := harness.Eventually(time.Minute, func() error {
		rs, err := c.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{LabelSelector: "app=after-outage"})
		if err == nil && len(rs.Items) == 0 {
			err = errors.New("no ReplicaSet for the Deployment made after the outage")
		}
		return err
	}); err != nil {
		t.Error(err)
	}

}

// TestIntegrationSharedTokenRotation: kasa token rotate on one of two
// servers that share a datastore seals the bootstrap data with the new
// server token; that server starts again with it, and the other server,
// down with the old token in its file and its environment, starts with the
// old one and takes the new one. A rotated agent token does not stop a
// start either (it is this server's, not the cluster's bootstrap data).
func TestIntegrationSharedTokenRotation(t *testing.T) {
	first, second, tok := twoServers(t, "--datastore-endpoint", startMariaDB(t))
	if _, err := second.Stop(time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"token", "rotate"}, {"token", "rotate", "--agent"}} {
		out, code, err := first.Run(append(args, "--kubeconfig", first.Kubeconfig(), "--data-dir", first.DataDir)...)
		if err != nil || code != 0 {
			t.Fatalf("%v: exit %d, %v\n%s", args, code, err, out)
		}
	}
	newTok, err := os.ReadFile(filepath.Join(first.DataDir, "server", "token"))
	if err != nil || bytes.Equal(newTok, tok) {
		t.Fatalf("the token file after kasa token rotate: %v", err)
	}
	if err := harness.Eventually(time.Minute, func() error {
		if !strings.Contains(first.LogTail(100000), "the bootstrap data is sealed with the new one") {
			return errors.New("the first server did not seal the bootstrap data again")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*harness.Server{first, second} {
		if s == first {
			if _, err := s.Stop(time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		if err := s.WaitReady(readyTimeout); err != nil {
			t.Fatalf("%s after the rotation: %v\n%s", s.DataDir, err, s.LogTail(30))
		}
	}
	got, err := os.ReadFile(filepath.Join(second.DataDir, "server", "token"))
	if err != nil || !bytes.Equal(got, newTok) {
		t.Errorf("the second server did not take the new token: %v", err)
	}
	if !strings.Contains(second.LogTail(100000), "this server took the new one") {
		t.Error("the second server did not say it took the new token")
	}
	if _, err := client(t, second).CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
}
