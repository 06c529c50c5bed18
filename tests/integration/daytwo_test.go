//go:build integration

package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kasa-io/kasa/pkg/datastore"
	"github.com/kasa-io/kasa/pkg/pki"
	"github.com/kasa-io/kasa/tests/harness"
)

// certListing is kasa certificate check --output json on s.
func certListing(t *testing.T, s *harness.Server) []pki.Info {
	t.Helper()
	out, code, err := s.Run("certificate", "check", "--output", "json", "--data-dir", s.DataDir)
	if err != nil || code != 0 {
		t.Fatalf("certificate check: exit %d, %v\n%s", code, err, out)
	}
	var infos []pki.Info
	if err := json.Unmarshal([]byte(out), &infos); err != nil {
		t.Fatalf("certificate check: %v\n%s", err, out)
	}
	return infos
}

// TestIntegrationCertificateRotate: kasa certificate check lists every
// certificate and CA; kasa certificate rotate renews the server's while
// it runs: the API server serves the new certificate, the admin kubeconfig
// gets the new admin certificate, and clients go on working; an unknown
// --service is refused with the names it takes.
func TestIntegrationCertificateRotate(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	before := certListing(t, s)
	byFile := map[string]pki.Info{}
	cas := 0
	for _, in := range before {
		if in.CA {
			cas++
			continue
		}
		byFile[in.File] = in
		if in.Status != pki.StatusOK || in.NotAfter.Sub(in.NotBefore) < 360*24*time.Hour {
			t.Errorf("%s: %s, %s to %s", in.File, in.Status, in.NotBefore, in.NotAfter)
		}
	}
	if cas < 4 || len(byFile) < 6 {
		t.Fatalf("%d CAs and %d certificates listed: %+v", cas, len(byFile), before)
	}
	table, _, _ := s.Run("certificate", "check", "--data-dir", s.DataDir)
	if !strings.Contains(table, "server/tls/serving-kube-apiserver.crt") || !strings.Contains(table, "REMAINING") {
		t.Errorf("table:\n%s", table)
	}

	out, code, _ := s.Run("certificate", "rotate", "--service", "etcd", "--data-dir", s.DataDir)
	if code == 0 || !strings.Contains(out, `unknown --service "etcd"`) || !strings.Contains(out, "api-server") {
		t.Errorf("an unknown service: exit %d\n%s", code, out)
	}
	if after := certListing(t, s); len(after) != len(before) || after[0].NotAfter != before[0].NotAfter {
		t.Error("a refused rotate changed a certificate")
	}

	time.Sleep(1100 * time.Millisecond) // new expiries, a second later
	out, code, err := s.Run("certificate", "rotate", "--data-dir", s.DataDir)
	if err != nil || code != 0 {
		t.Fatalf("rotate: exit %d, %v\n%s", code, err, out)
	}
	for _, in := range certListing(t, s) {
		if b, ok := byFile[in.File]; ok && strings.Contains(in.File, "/server/") && !in.NotAfter.After(b.NotAfter) {
			t.Errorf("%s not renewed: expires %s", in.File, in.NotAfter)
		}
	}
	serving, err := pki.ReadCert(filepath.Join(s.DataDir, "server/tls/serving-kube-apiserver.crt"))
	if err != nil {
		t.Fatal(err)
	}
	// The API server serves the new certificate, without a restart.
	if err := harness.Eventually(90*time.Second, func() error {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(s.URL(), "https://"), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only reads the served certificate
		if err != nil {
			return err
		}
		defer conn.Close()
		if got := conn.ConnectionState().PeerCertificates[0]; !got.Equal(serving) {
			return fmt.Errorf("the API server serves the certificate of serial %s, the file holds %s", got.SerialNumber, serving.SerialNumber)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	// The admin kubeconfig follows within a minute, and works.
	admin, err := os.ReadFile(filepath.Join(s.DataDir, "server/tls/client-admin.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := harness.Eventually(90*time.Second, func() error {
		rc, err := s.RESTConfig()
		if err != nil {
			return err
		}
		if string(rc.CertData) != string(admin) {
			return fmt.Errorf("%s holds the old admin certificate", s.Kubeconfig())
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if _, err := client(t, s).CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
		t.Errorf("the renewed admin kubeconfig: %v", err)
	}
	if !s.Running() {
		t.Fatal("the server exited")
	}
}

// TestIntegrationDatastoreHealth: under a churn of ConfigMaps and Secrets
// (KASA_CHURN sets how long; 2 minutes by default, an hour for the issue's
// long run) and compactions every 20 s, the SQLite file stays within twice
// its size after the first sixth of the run (a minute at least), compaction keeps up (kasa db status), and the log has no
// "database is locked"; after it, the free pages go back to the disk. Then a
// damaged state.db stops the next start with an error that names the file
// and the way back, and a snapshot taken before restores the server.
func TestIntegrationDatastoreHealth(t *testing.T) {
	run := 2 * time.Minute
	if v := os.Getenv("KASA_CHURN"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("KASA_CHURN=%q: %v", v, err)
		}
		run = d
	}
	s := startServer(t, "--test-db-check-interval", "10s", "--kube-apiserver-arg", "etcd-compaction-interval=20s")
	c := client(t, s)
	status := func() datastore.SQLiteStats {
		t.Helper()
		out, code, err := s.Run("db", "status", "--output", "json", "--data-dir", s.DataDir)
		if err != nil || code != 0 {
			t.Fatalf("db status: exit %d, %v\n%s", code, err, out)
		}
		var st datastore.SQLiteStats
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("db status: %v\n%s", err, out)
		}
		return st
	}
	if st := status(); st.AutoVacuum != 2 || st.Keys < 100 {
		t.Fatalf("a new server's datastore: %+v", st)
	}

	churn := harness.StartChurn(c, 8, "churn")
	started := time.Now()
	var base datastore.SQLiteStats
	var maxSize, maxLag int64
	for time.Since(started) < run {
		time.Sleep(run / 12)
		st := status()
		t.Logf("after %s: %d writes, file %.1f MiB (wal %.1f MiB, free %.1f MiB), %d rows, revision %d, compaction lag %d",
			time.Since(started).Round(time.Second), churn.Ops(), float64(st.Size)/(1<<20), float64(st.WALSize)/(1<<20), float64(st.FreeBytes())/(1<<20), st.Rows, st.Revision, st.CompactionLag())
		// The base: after the first sixth of the run, and after three
		// compactions at least.
		if base.Size == 0 && time.Since(started) >= max(run/6, time.Minute) {
			base = st
		}
		if base.Size != 0 {
			maxSize = max(maxSize, st.Size)
			maxLag = max(maxLag, st.CompactionLag())
		}
	}
	ops, errs, last := churn.Stop()
	if ops < 1000 {
		t.Fatalf("the churn made only %d writes (%d failed, last %v)", ops, errs, last)
	}
	if errs > ops/1000 {
		t.Errorf("%d of %d writes failed, the last: %v", errs, ops+errs, last)
	}
	if maxSize > 2*base.Size {
		t.Errorf("the datastore grew from %d to %d bytes after the first sixth of the run", base.Size, maxSize)
	}
	// kine keeps 1000 revisions; the API server compacts every 20 s here.
	if rate := float64(ops) / time.Since(started).Seconds(); float64(maxLag) > 1000+rate*60 {
		t.Errorf("compaction fell behind: %d revisions not compacted at %.0f writes/s", maxLag, rate)
	}
	// Once the churn ends, compaction frees most pages, and the server
	// returns them to the disk.
	var log []byte
	if err := harness.Eventually(2*time.Minute, func() error {
		var err error
		if log, err = os.ReadFile(s.LogPath()); err != nil {
			return err
		}
		if !strings.Contains(string(log), "returned the datastore's free pages to the disk") {
			return errors.New("the log does not tell of free pages returned to the disk")
		}
		if st := status(); st.Size > maxSize/2 {
			return fmt.Errorf("the file takes %d bytes (%d free), %d at most during the churn", st.Size, st.FreeBytes(), maxSize)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if n := strings.Count(string(log), "database is locked"); n > 0 {
		t.Errorf("%d log lines say the database is locked", n)
	}

	// A snapshot, then a damaged file: the start fails with the file's
	// name and the way back; the snapshot restores.
	out, code, err := s.Run("db", "snapshot", "save", "--data-dir", s.DataDir)
	if err != nil || code != 0 {
		t.Fatalf("save: exit %d, %v\n%s", code, err, out)
	}
	snap := strings.Fields(out)[0]
	if _, err := s.Stop(time.Minute); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(s.DataDir, "server/db/state.db")
	b, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	for i := 4 * 4096; i+4096 < len(b); i += 4096 {
		copy(b[i+200:i+600], strings.Repeat("\xa5", 400))
	}
	if err := os.WriteFile(db, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := harness.Eventually(time.Minute, func() error {
		if s.Running() {
			return fmt.Errorf("still running")
		}
		return nil
	}); err != nil {
		t.Fatal("the server runs on a damaged datastore")
	}
	tail := s.LogTail(5)
	if s.ExitCode() == 0 || !strings.Contains(tail, db) || !strings.Contains(tail, "is damaged") || !strings.Contains(tail, "--cluster-reset-restore-path") {
		t.Errorf("exit %d, log:\n%s", s.ExitCode(), tail)
	}
	s.ExtraArgs = append(s.ExtraArgs, "--cluster-reset", "--cluster-reset-restore-path", snap)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitReady(readyTimeout); err != nil {
		t.Fatalf("restore after the damage: %v\n%s", err, s.LogTail(20))
	}
	if _, err := client(t, s).CoreV1().Namespaces().Get(context.Background(), "kube-system", metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
}
