//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kasa-io/kasa/tests/harness"
)

// snapshotFiles lists the snapshot files of dir.
func snapshotFiles(t *testing.T, dir, prefix string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names
}

// TestIntegrationSnapshotRestore: a snapshot taken under a load of 8
// writers restores, on the same server and on a fresh data dir with the
// token, to a cluster with every object acknowledged before the snapshot
// began, the same CA and the Secrets readable; the restored revision is
// past every earlier one; a second start with the same flags restores
// nothing; scheduled snapshots come on time and keep their retention; a
// wrong token, a damaged file and another cluster's settings are refused
// with nothing changed.
func TestIntegrationSnapshotRestore(t *testing.T) {
	s := startServer(t, "--db-snapshot-schedule-cron", "*/5 * * * * *", "--db-snapshot-retention", "2")
	c := client(t, s)
	ctx := context.Background()
	snapDir := filepath.Join(s.DataDir, "server/db/snapshots")
	makeSecret(t, c, "kept", "a-secret-value-kept-by-the-snapshot")

	load := harness.StartLoad(c, 8, "load")
	time.Sleep(2 * time.Second)
	began := time.Now()
	out, code, err := s.Run("db", "snapshot", "save", "--data-dir", s.DataDir)
	if err != nil || code != 0 {
		load.Stop()
		t.Fatalf("save: exit %d, %v\n%s", code, err, out)
	}
	time.Sleep(time.Second)
	acked := load.Stop()
	file := strings.Fields(out)[0]
	t.Logf("saved under load: %s", strings.TrimSpace(out))
	var before []string
	for name, at := range acked {
		if at.Before(began) {
			before = append(before, name)
		}
	}
	if len(before) < 50 {
		t.Fatalf("only %d writes acknowledged before the snapshot: the test loaded nothing", len(before))
	}
	out, _, _ = s.Run("db", "snapshot", "list", "--data-dir", s.DataDir)
	if !strings.Contains(out, filepath.Base(file)) {
		t.Errorf("list does not show %s:\n%s", file, out)
	}

	// Scheduled snapshots: every 5 s, two kept.
	if err := harness.Eventually(time.Minute, func() error {
		if n := len(snapshotFiles(t, snapDir, "db-snapshot-")); n < 2 {
			return fmt.Errorf("%d scheduled snapshots", n)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	time.Sleep(12 * time.Second)
	if n := len(snapshotFiles(t, snapDir, "db-snapshot-")); n != 2 {
		t.Errorf("%d scheduled snapshots, want the retention's 2", n)
	}

	if _, err := c.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after-snapshot"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm, err := c.CoreV1().ConfigMaps("default").Get(ctx, "after-snapshot", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lastRV, _ := strconv.ParseInt(cm.ResourceVersion, 10, 64)

	// check says what a restored cluster must hold.
	check := func(t *testing.T, s *harness.Server) kubernetes.Interface {
		t.Helper()
		c := client(t, s)
		missing, err := harness.MissingConfigMaps(ctx, c, append(slices.Clone(before), "after-snapshot"))
		if err != nil {
			t.Fatal(err)
		}
		if n := len(missing); n == 0 || missing[n-1] != "after-snapshot" {
			t.Error("an object made after the snapshot survived the restore")
		} else if missing = missing[:n-1]; len(missing) > 0 {
			t.Errorf("%d of %d objects acknowledged before the snapshot are missing: %v", len(missing), len(before), missing[:min(5, len(missing))])
		}
		if got := secretValue(t, c, "kept"); got != "a-secret-value-kept-by-the-snapshot" {
			t.Errorf("the Secret reads %q", got)
		}
		// The revision moved past every one clients saw before.
		cm, err := c.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after-restore"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if rv, _ := strconv.ParseInt(cm.ResourceVersion, 10, 64); rv <= lastRV+1_000_000 {
			t.Errorf("a write after the restore has revision %d; before it, %d", rv, lastRV)
		}
		return c
	}

	caBefore, err := os.ReadFile(filepath.Join(s.DataDir, "server/tls/ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	tokenBytes, err := os.ReadFile(filepath.Join(s.DataDir, "server/token"))
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(string(tokenBytes))

	// The same server, restored.
	if _, err := s.Stop(time.Minute); err != nil {
		t.Fatal(err)
	}
	s.ExtraArgs = []string{"--cluster-reset", "--cluster-reset-restore-path", file}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitReady(readyTimeout); err != nil {
		t.Fatalf("%v\n%s", err, s.LogTail(40))
	}
	check(t, s)
	// Again with the same flags: nothing restored again.
	if _, err := s.Stop(time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
	if _, err := client(t, s).CoreV1().ConfigMaps("default").Get(ctx, "after-restore", metav1.GetOptions{}); err != nil {
		t.Errorf("a second start with --cluster-reset lost what was written after the restore: %v", err)
	}
	if b, _ := os.ReadFile(s.LogPath()); !bytes.Contains(b, []byte("this snapshot was restored already")) {
		t.Error("the second start does not say the snapshot was restored already")
	}

	// A fresh data dir: refused with a wrong token, a damaged file and
	// another cluster CIDR, each with nothing made; then restored.
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := harness.NewServer(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fresh.Close)
	damaged := filepath.Join(t.TempDir(), "damaged")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("SQLite format 3"))
	b[i+300] ^= 0xff
	if err := os.WriteFile(damaged, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster-reset", "--cluster-reset-restore-path", file, "--token", "K10" + strings.Repeat("0", 64) + "::server:not-the-right-secret-1234"}, "another server token"},
		{[]string{"--cluster-reset", "--cluster-reset-restore-path", damaged, "--token", tok}, "does not match its checksum"},
		{[]string{"--cluster-reset", "--cluster-reset-restore-path", file, "--token", tok, "--cluster-cidr", "10.99.0.0/16"}, `--cluster-cidr is "10.99.0.0/16" here but "10.42.0.0/16"`},
		{[]string{"--cluster-reset-restore-path", file}, "add --cluster-reset"},
	} {
		fresh.ExtraArgs = bad.args
		out, code := runFor(t, fresh, 2*time.Minute)
		if code == 0 || !strings.Contains(out, bad.want) {
			t.Errorf("%v: exit %d, want a message with %q:\n%s", bad.args, code, bad.want, lastLines(out, 5))
		}
		if _, err := os.Stat(filepath.Join(fresh.DataDir, "server/db/state.db")); err == nil {
			t.Errorf("%v: a refused restore left a database", bad.args)
		}
	}
	fresh.ExtraArgs = []string{"--cluster-reset", "--cluster-reset-restore-path", file, "--token", tok}
	if err := fresh.Start(); err != nil {
		t.Fatal(err)
	}
	if err := fresh.WaitReady(readyTimeout); err != nil {
		t.Fatalf("%v\n%s", err, fresh.LogTail(40))
	}
	check(t, fresh)
	caAfter, err := os.ReadFile(filepath.Join(fresh.DataDir, "server/tls/ca.crt"))
	if err != nil || !bytes.Equal(caAfter, caBefore) {
		t.Errorf("the restored cluster's CA differs from the snapshot's cluster's (%v)", err)
	}
}

// runFor runs the server s in the foreground, as a refused start does, and
// kills it after timeout (a start that was not refused).
func runFor(t *testing.T, s *harness.Server, timeout time.Duration) (string, int) {
	t.Helper()
	cmd := s.Command(s.Args()...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(timeout, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	_ = cmd.Wait()
	return out.String(), cmd.ProcessState.ExitCode()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
