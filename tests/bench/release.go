package main

import (
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
func benchRelease(bin, dist string, starts int, add func(name, value, target string)) error {
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
	return nil
}
