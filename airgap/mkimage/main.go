// Command mkimage builds a container image archive from files on disk, with no
// daemon and no registry: the way kasa makes its system images (and the test
// images of its suites) from binaries built from source.
//
//	mkimage -o pause.tar -ref kasa.local/pause:3.10.2 -entrypoint /pause pause=/pause
//
// Each FILE=PATH argument puts the local FILE at PATH in the image's one
// layer. The result is a docker-archive tarball, which containerd imports.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	out := fs.String("o", "", "output archive")
	ref := fs.String("ref", "", "image reference, such as kasa.local/pause:3.10.2")
	var entrypoint, env stringList
	fs.Var(&entrypoint, "entrypoint", "entrypoint word (repeatable)")
	fs.Var(&env, "env", "NAME=VALUE in the image's environment (repeatable)")
	user := fs.String("user", "", "user the image runs as, such as 65532")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *ref == "" || fs.NArg() == 0 {
		return errors.New("usage: mkimage -o OUT -ref REF [-entrypoint WORD] FILE=PATH [FILE=PATH]")
	}
	r, err := name.ParseReference(*ref)
	if err != nil {
		return err
	}
	layer, err := layerOf(fs.Args())
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Config.Entrypoint = entrypoint
	cfg.Config.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	cfg.Config.User = *user
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(*out, r, img)
}

// layerOf makes one uncompressed layer holding each FILE at its PATH, with
// the parent folders, owned by root, files 0755.
func layerOf(specs []string) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, spec := range specs {
		src, dst, ok := strings.Cut(spec, "=")
		if !ok || !path.IsAbs(dst) {
			return nil, fmt.Errorf("%q: want FILE=/absolute/path", spec)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		if err := writeDirs(tw, path.Dir(dst), dirs); err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(dst, "/"), Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}

// writeDirs writes the entries of dir and its parents not yet in written.
func writeDirs(tw *tar.Writer, dir string, written map[string]bool) error {
	if dir == "/" || written[dir] {
		return nil
	}
	if err := writeDirs(tw, path.Dir(dir), written); err != nil {
		return err
	}
	written[dir] = true
	return tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(dir, "/") + "/", Mode: 0o755, Typeflag: tar.TypeDir})
}
