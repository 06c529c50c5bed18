package main

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/kasa-io/kasa/tests/harness"
)

// benchCatalog measures the app catalog on a running node: kasa install
// mysql to ready with its image present, and the latency of kasa apps and
// kasa list. It needs the stand-in images (make test-images).
func benchCatalog(s *harness.Server, add func(name, value, target string)) error {
	mysql, err := harness.AppImage("docker.io/library/mysql:8.4")
	if err != nil {
		return err
	}
	if err := s.DropImage(mysql); err != nil {
		return err
	}
	if _, err := until(3*time.Minute, func() error { return s.ImagesImported("docker.io/library/mysql:8.4") }); err != nil {
		return err
	}
	kasa := func(args ...string) (time.Duration, error) {
		cmd := exec.Command(s.Bin, args...)
		cmd.Env = append(harness.HermeticEnv(), "KUBECONFIG="+s.Kubeconfig())
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("kasa %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return time.Since(start), nil
	}
	d, err := kasa("install", "mysql")
	if err != nil {
		return err
	}
	add("catalog: kasa install mysql to ready (image present)", secs(d), "< 45 s")
	for _, args := range [][]string{{"apps"}, {"list"}} {
		var runs []time.Duration
		for range 5 {
			d, err := kasa(args...)
			if err != nil {
				return err
			}
			runs = append(runs, d)
		}
		slices.Sort(runs)
		add(fmt.Sprintf("catalog: kasa %s, median of 5", args[0]), ms(runs[2]), "< 300 ms")
	}
	_, err = kasa("uninstall", "mysql", "--purge")
	return err
}
