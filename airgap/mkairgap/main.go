// Command mkairgap merges image archives (docker archives, as airgap/mkimage
// writes them) into one docker archive that holds every image under every
// reference it had: the release's kasa-airgap-images-ARCH archive, which
// `ctr images import` and a node's <data-dir>/agent/images/ folder take
// whole. Layers are copied as they are, not compressed again.
//
//	mkairgap -o OUT.tar IN.tar...
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/kasa-io/kasa/pkg/fileutil"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mkairgap:", err)
		os.Exit(1)
	}
}

func run() error {
	out := flag.String("o", "", "archive to write")
	flag.Parse()
	if *out == "" || flag.NArg() == 0 {
		return errors.New("usage: mkairgap -o OUT.tar IN.tar [IN.tar]")
	}
	refs := map[name.Reference]v1.Image{}
	for _, in := range flag.Args() {
		if err := add(refs, in); err != nil {
			return fmt.Errorf("%s: %w", in, err)
		}
	}
	return fileutil.WriteFileWith(*out, 0o644, func(w io.Writer) error { return tarball.MultiRefWrite(refs, w) })
}

// add reads every image of archive in under each of its references.
func add(refs map[name.Reference]v1.Image, in string) error {
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(in) })
	if err != nil {
		return err
	}
	for _, d := range m {
		if len(d.RepoTags) == 0 {
			return errors.New("an image without a reference: the merged archive could not name it")
		}
		for _, tag := range d.RepoTags {
			t, err := name.NewTag(tag)
			if err != nil {
				return err
			}
			img, err := tarball.ImageFromPath(in, &t)
			if err != nil {
				return err
			}
			for r := range refs {
				if r.Name() == t.Name() {
					return fmt.Errorf("%s is in two archives", t)
				}
			}
			refs[t] = img
		}
	}
	return nil
}
