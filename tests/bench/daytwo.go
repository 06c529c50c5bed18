package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kasa-io/kasa/pkg/datastore"
	"github.com/kasa-io/kasa/tests/harness"
)

// benchDayTwo measures, on a control plane alone: a snapshot's save and
// restore with 10,000 ConfigMaps stored, and the SQLite file's size during
// a churn of ConfigMaps and Secrets from 8 clients (the API server
// compacting every minute, kasa's default), sampled 12 times; the growth
// is the largest size against the size at 10 minutes (at a third of a
// churn shorter than 30 minutes).
func benchDayTwo(bin string, churnFor time.Duration, add func(name, value, target string)) error {
	s, err := harness.NewServer(bin)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Start(); err != nil {
		return err
	}
	if err := s.WaitReady(2 * time.Minute); err != nil {
		return err
	}
	c, err := s.Client()
	if err != nil {
		return err
	}
	const objects = 10000
	if _, _, _, err := createLoad(c, "snap", objects, 8); err != nil {
		return err
	}
	status := func() (datastore.SQLiteStats, error) {
		var st datastore.SQLiteStats
		out, code, err := s.Run("db", "status", "--output", "json", "--data-dir", s.DataDir)
		if err != nil || code != 0 {
			return st, fmt.Errorf("db status: exit %d, %w: %s", code, err, out)
		}
		return st, json.Unmarshal([]byte(out), &st)
	}
	st, err := status()
	if err != nil {
		return err
	}
	started := time.Now()
	out, code, err := s.Run("db", "snapshot", "save", "--data-dir", s.DataDir)
	if err != nil || code != 0 {
		return fmt.Errorf("snapshot save: exit %d, %w: %s", code, err, out)
	}
	saved := time.Since(started)
	file := strings.Fields(out)[0]
	fi, err := os.Stat(file)
	if err != nil {
		return err
	}
	add(fmt.Sprintf("snapshot save, %d ConfigMaps (%.0f MiB datastore)", objects, float64(st.Size)/(1<<20)),
		fmt.Sprintf("%s, %.1f MiB file", secs(saved), float64(fi.Size())/(1<<20)), "")
	if _, err := s.Stop(time.Minute); err != nil {
		return err
	}
	s.ExtraArgs = []string{"--cluster-reset", "--cluster-reset-restore-path", file}
	started = time.Now()
	if err := s.Start(); err != nil {
		return err
	}
	if err := s.WaitReady(3 * time.Minute); err != nil {
		return err
	}
	add("restore of that snapshot, start to /readyz (--cluster-reset)", secs(time.Since(started)), "")
	if _, err := s.Stop(time.Minute); err != nil {
		return err
	}
	s.ExtraArgs = nil
	if err := s.Start(); err != nil {
		return err
	}
	if err := s.WaitReady(3 * time.Minute); err != nil {
		return err
	}
	if c, err = s.Client(); err != nil {
		return err
	}

	churn := harness.StartChurn(c, 8, "churn")
	started = time.Now()
	var curve []string
	var first, peak, lag int64
	for i := 1; i <= 12; i++ {
		time.Sleep(churnFor / 12)
		st, err := status()
		if err != nil {
			_, _, _ = churn.Stop()
			return err
		}
		if first == 0 && time.Since(started) >= min(10*time.Minute, churnFor/3) {
			first = st.Size
		}
		peak = max(peak, st.Size)
		lag = max(lag, st.CompactionLag())
		curve = append(curve, fmt.Sprintf("%s %.0f", time.Since(started).Round(time.Second), float64(st.Size)/(1<<20)))
	}
	ops, errs, last := churn.Stop()
	if errs > 0 {
		fmt.Fprintf(os.Stderr, "bench: %d churn writes failed, the last: %v\n", errs, last)
	}
	log, err := os.ReadFile(s.LogPath())
	if err != nil {
		return err
	}
	add(fmt.Sprintf("churn of ConfigMaps and Secrets, 8 clients, %s", churnFor), fmt.Sprintf("%.0f writes/s, %d \"database is locked\"", float64(ops)/time.Since(started).Seconds(), strings.Count(string(log), "database is locked")), "")
	add("churn: datastore MiB by time (time MiB)", strings.Join(curve, ", "), "")
	rate := float64(ops) / time.Since(started).Seconds()
	add("churn: largest compaction lag of the 12 checks (kasa db status)", fmt.Sprintf("%d revisions, %.0f s of writes", lag, float64(lag)/rate), "")
	add(fmt.Sprintf("churn: largest file / file after %s", min(10*time.Minute, churnFor/3)), fmt.Sprintf("%.2f", float64(peak)/float64(first)), "≤ 2")
	return nil
}
