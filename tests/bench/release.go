package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/kasa-io/kasa/tests/harness"
)

// benchRelease reports the sizes of a release made by scripts/release.sh
// (dist is its dist/VERSION folder) against bin, the program with its
// bundle as make builds it, and the control plane's cold start from the
// artifact on a fresh data dir, its first unpacking included.
func benchRelease(bin, dist string, starts int, node bool, add func(name, value, target string)) error {
	artifact := filepath.Join(dist, "kasa-"+runtime.GOARCH)
	images := filepath.Join(dist, "kasa-airgap-images-"+runtime.GOARCH+".tar.zst")
	size := func(f string) (int64, error) {
		st, err := os.Stat(f)
		if err != nil {
			return 0, err
		}
		return st.Size(), nil
	}
	a, err := size(artifact)
	if err != nil {
		return err
	}
	im, err := size(images)
	if err != nil {
		return err
	}
	b, err := size(bin)
	if err != nil {
		return err
	}
	mb := func(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
	add("release: kasa-"+runtime.GOARCH+" (program, bundled programs, system images)", mb(a)+" (make's bin/kasa "+mb(b)+")", "< 150 MB")
	add("release: kasa-airgap-images-"+runtime.GOARCH+".tar.zst", mb(im), "")

	var fromArtifact, fromBin []time.Duration
	for range starts {
		for _, run := range []struct {
			exe string
			to  *[]time.Duration
		}{{artifact, &fromArtifact}, {bin, &fromBin}} {
			srv, err := harness.NewServer(run.exe)
			if err != nil {
				return err
			}
			d, err := timeStart(srv)
			srv.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", run.exe, err)
			}
			*run.to = append(*run.to, d)
		}
	}
	add("release: control plane cold start to /readyz from the artifact, unpacking included", median(fromArtifact),
		"no slower than bin/kasa's "+median(fromBin))
	if !node {
		return nil
	}
	// A node unpacks its bundle from either: from bin/kasa too, into a
	// fresh data dir, before containerd starts.
	var nodeTimes []string
	for _, exe := range []string{artifact, bin} {
		d, err := nodeColdStart(exe)
		if err != nil {
			return fmt.Errorf("a node from %s: %w", exe, err)
		}
		nodeTimes = append(nodeTimes, secs(d))
	}
	add("release: node cold start to node Ready from the artifact, unpacking included", nodeTimes[0],
		"no slower than bin/kasa's "+nodeTimes[1])
	return nil
}

// nodeColdStart starts a server with its node from exe on a fresh data dir
// and returns the time to a Ready posted by its kubelet.
func nodeColdStart(exe string) (time.Duration, error) {
	s, err := harness.NewServer(exe)
	if err != nil {
		return 0, err
	}
	s.Node = true
	defer func() {
		s.Kill()
		_, _, _ = s.Run("killall", "--data-dir", s.DataDir)
		_ = os.RemoveAll(s.DataDir)
	}()
	if err := s.Start(); err != nil {
		return 0, err
	}
	if err := s.WaitReady(2 * time.Minute); err != nil {
		return 0, err
	}
	c, err := s.Client()
	if err != nil {
		return 0, err
	}
	ready, err := until(2*time.Minute, func() error { return readySince(context.Background(), c, s.Started) })
	if err != nil {
		return 0, err
	}
	return ready.Sub(s.Started), nil
}
