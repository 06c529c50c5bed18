// Command mkimage builds a container image archive from files on disk, with no
// daemon and no registry: the way kasa makes its system images (and the test
// images of its suites) from binaries built from source.
//
//	mkimage -o pause.tar -ref kasa.local/pause:3.10.2 -entrypoint /pause pause=/pause
//	mkimage -o redis.tar -ref docker.io/library/redis:7.4 -rootfs build/rootfs/redis \
//		-entrypoint docker-entrypoint.sh -cmd redis-server -port 6379 -workdir /data
//
// Each FILE=PATH argument puts the local FILE at PATH in the image, owned by
// root, mode 0755. -rootfs DIR makes a layer of the whole tree under DIR as it
// is on disk: owners (numeric), modes, symlinks, hard links and file
// capabilities are kept; device nodes and sockets are left out (a container
// runtime provides /dev). With both, the FILE=PATH layer goes on top.
//
// -ref may be given more than once: the archive then names the one image by
// each reference. The result is a docker-archive tarball with gzip layers,
// which containerd imports; with -oci, an OCI image layout in one tar whose
// layers the zstd program compresses (at -level, 19 by default), the form of
// kasa's system images (airgap/internal/ocitar says why). -arch is the
// architecture the image's config names, this program's by default. The
// archive is written to a temporary file and renamed into place, so a folder
// watcher never sees half an archive.
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"golang.org/x/sys/unix"

	"github.com/kasa-io/kasa/airgap/internal/ocitar"
)

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

const usage = "usage: mkimage -o OUT -ref REF [-ref REF] [-rootfs DIR] [-entrypoint WORD] [-cmd WORD] " +
	"[-env NAME=VALUE] [-port PORT[/PROTO]] [-workdir DIR] [-user USER] [-volume DIR] [-stopsignal SIG] " +
	"[-label KEY=VALUE] [-arch ARCH] [-oci [-level N]] [FILE=PATH ...]"

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// options is what the flags ask for, before validation.
type options struct {
	out, rootfs, user, workdir, stopSignal string
	refs, entrypoint, cmd, env, ports      stringList
	volumes, labels, files                 stringList
	arch                                   string
	oci                                    bool
	level                                  int
}

// spec is a validated request.
type spec struct {
	out    string
	refs   []name.Reference
	rootfs string
	files  []fileSpec
	config v1.Config
	arch   string
	oci    bool
	level  int
}

type fileSpec struct{ src, dst string }

func main() {
	// An interrupt stops the work and removes the temporary files.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	s, err := o.validate()
	if err != nil {
		return err
	}
	return s.write(ctx)
}

func parse(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fs.StringVar(&o.out, "o", "", "output archive")
	fs.Var(&o.refs, "ref", "image reference, such as kasa.local/pause:3.10.2 (repeatable: one image, several names)")
	fs.StringVar(&o.rootfs, "rootfs", "", "a directory whose whole tree becomes a layer, owners and modes kept")
	fs.Var(&o.entrypoint, "entrypoint", "entrypoint word (repeatable)")
	fs.Var(&o.cmd, "cmd", "command word, the entrypoint's arguments (repeatable)")
	fs.Var(&o.env, "env", "NAME=VALUE in the image's environment (repeatable; PATH=... replaces the default PATH)")
	fs.Var(&o.ports, "port", "exposed port, such as 8080 or 53/udp (repeatable)")
	fs.StringVar(&o.workdir, "workdir", "", "working directory of the image's process")
	fs.StringVar(&o.user, "user", "", "user the image runs as, such as 65532")
	fs.Var(&o.volumes, "volume", "a directory the image declares as a volume (repeatable)")
	fs.StringVar(&o.stopSignal, "stopsignal", "", "signal that stops the image's process, such as SIGQUIT")
	fs.Var(&o.labels, "label", "KEY=VALUE label (repeatable)")
	fs.StringVar(&o.arch, "arch", runtime.GOARCH, "the architecture the image's config names: amd64 or arm64")
	fs.BoolVar(&o.oci, "oci", false, "write an OCI image layout with zstd layers instead of a docker archive")
	fs.IntVar(&o.level, "level", 19, "zstd's level for -oci layers, 1 to 22")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	o.files = fs.Args()
	return o, nil
}

func (o *options) validate() (*spec, error) {
	if o.out == "" || len(o.refs) == 0 || (o.rootfs == "" && len(o.files) == 0) {
		return nil, errors.New(usage)
	}
	s := &spec{out: o.out, rootfs: o.rootfs, arch: o.arch, oci: o.oci, level: o.level}
	if o.arch != "amd64" && o.arch != "arm64" {
		return nil, fmt.Errorf("-arch %q: amd64 or arm64", o.arch)
	}
	if o.oci && (o.level < 1 || o.level > 22) {
		return nil, fmt.Errorf("-level %d: zstd's levels are 1 to 22", o.level)
	}
	for _, r := range o.refs {
		ref, err := name.ParseReference(r)
		if err != nil {
			return nil, fmt.Errorf("reference %q: %w", r, err)
		}
		if _, tag := ref.(name.Tag); o.oci && !tag {
			return nil, fmt.Errorf("reference %q: an OCI archive names its images by tag, not by digest", r)
		}
		s.refs = append(s.refs, ref)
	}
	if o.rootfs != "" {
		fi, err := os.Stat(o.rootfs)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("-rootfs %s: not a directory", o.rootfs)
		}
	}
	for _, f := range o.files {
		src, dst, ok := strings.Cut(f, "=")
		if !ok || !path.IsAbs(dst) {
			return nil, fmt.Errorf("%q: want FILE=/absolute/path", f)
		}
		s.files = append(s.files, fileSpec{src, dst})
	}
	c := &s.config
	c.Entrypoint = o.entrypoint
	c.Cmd = o.cmd
	c.User = o.user
	c.WorkingDir = o.workdir
	c.StopSignal = o.stopSignal
	hasPath := false
	for _, e := range o.env {
		k, _, ok := strings.Cut(e, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("-env %q: want NAME=VALUE", e)
		}
		hasPath = hasPath || k == "PATH"
	}
	if !hasPath {
		c.Env = append(c.Env, defaultPath)
	}
	c.Env = append(c.Env, o.env...)
	if c.WorkingDir != "" && !path.IsAbs(c.WorkingDir) {
		return nil, fmt.Errorf("-workdir %q: want an absolute path", c.WorkingDir)
	}
	for _, p := range o.ports {
		port, proto, _ := strings.Cut(p, "/")
		if proto == "" {
			proto = "tcp"
		}
		if port == "" || strings.Trim(port, "0123456789") != "" || (proto != "tcp" && proto != "udp" && proto != "sctp") {
			return nil, fmt.Errorf("-port %q: want PORT or PORT/tcp|udp|sctp", p)
		}
		if c.ExposedPorts == nil {
			c.ExposedPorts = map[string]struct{}{}
		}
		c.ExposedPorts[port+"/"+proto] = struct{}{}
	}
	for _, v := range o.volumes {
		if !path.IsAbs(v) {
			return nil, fmt.Errorf("-volume %q: want an absolute path", v)
		}
		if c.Volumes == nil {
			c.Volumes = map[string]struct{}{}
		}
		c.Volumes[v] = struct{}{}
	}
	for _, l := range o.labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("-label %q: want KEY=VALUE", l)
		}
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		c.Labels[k] = v
	}
	return s, nil
}

// write builds the image and writes the archive to s.out through a
// temporary file in the same folder.
func (s *spec) write(ctx context.Context) error {
	dir := filepath.Dir(s.out)
	var layers []v1.Layer
	var temps []string
	defer func() {
		for _, t := range temps {
			os.Remove(t)
		}
	}()
	add := func(what string, fill func(*tar.Writer) error) error {
		l, files, err := s.layer(ctx, dir, fill)
		temps = append(temps, files...)
		if err != nil {
			return fmt.Errorf("layer of %s: %w", what, err)
		}
		layers = append(layers, l)
		return nil
	}
	if s.rootfs != "" {
		if err := add(s.rootfs, func(tw *tar.Writer) error { return writeTree(ctx, tw, s.rootfs) }); err != nil {
			return err
		}
	}
	if len(s.files) > 0 {
		if err := add("the files", func(tw *tar.Writer) error { return writeFiles(tw, s.files) }); err != nil {
			return err
		}
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return err
	}
	if s.oci {
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", s.arch
	cfg.Config = s.config
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".mkimage-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	w := ctxWriter{ctx, tmp}
	if s.oci {
		im := ocitar.Image{Image: img}
		for _, r := range s.refs {
			im.Refs = append(im.Refs, r.(name.Tag))
		}
		err = ocitar.Write(w, []ocitar.Image{im})
	} else {
		refs := map[name.Reference]v1.Image{}
		for _, r := range s.refs {
			refs[r] = img
		}
		err = tarball.MultiRefWrite(refs, w)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), s.out)
}

// layer writes one layer, the tar that fill writes, to a temporary file in
// dir, compressed: by gzip for a docker archive, by the zstd program for an
// OCI one. It returns the temporary files it made, for the caller to remove
// once the archive is written.
func (s *spec) layer(ctx context.Context, dir string, fill func(*tar.Writer) error) (v1.Layer, []string, error) {
	f, err := os.CreateTemp(dir, ".mkimage-layer-*")
	if err != nil {
		return nil, nil, err
	}
	temps := []string{f.Name()}
	var zw io.WriteCloser = nopCloser{ctxWriter{ctx, f}}
	if !s.oci {
		if zw, err = gzip.NewWriterLevel(ctxWriter{ctx, f}, gzip.DefaultCompression); err != nil {
			f.Close()
			return nil, temps, err
		}
	}
	tw := tar.NewWriter(zw)
	err = fill(tw)
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, temps, err
	}
	if !s.oci {
		l, err := tarball.LayerFromFile(f.Name())
		return l, temps, err
	}
	zst := f.Name() + ".zst"
	temps = append(temps, zst)
	args := []string{"-q", "-f", "-T0", "-" + strconv.Itoa(s.level)}
	if s.level > 19 {
		args = append(args, "--ultra")
	}
	cmd := exec.CommandContext(ctx, "zstd", append(args, "-o", zst, f.Name())...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, temps, fmt.Errorf("zstd: %w: %s (scripts/install-deps.sh installs zstd)", err, bytes.TrimSpace(out))
	}
	os.Remove(f.Name())
	l, err := tarball.LayerFromFile(zst, tarball.WithCompression(compression.ZStd), tarball.WithMediaType(types.OCILayerZStd))
	return l, temps, err
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// ctxWriter fails its writes once ctx is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// writeFiles writes each file at its path, with the parent folders, owned
// by root, files 0755.
func writeFiles(tw *tar.Writer, files []fileSpec) error {
	dirs := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f.src)
		if err != nil {
			return err
		}
		if err := writeDirs(tw, path.Dir(f.dst), dirs); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(f.dst, "/"), Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	return nil
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

type inode struct{ dev, ino uint64 }

func writeTree(ctx context.Context, tw *tar.Writer, root string) error {
	links := map[inode]string{}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat data", p)
		}
		mode := fi.Mode()
		h := &tar.Header{
			Name:    rel,
			Mode:    int64(mode.Perm()),
			Uid:     int(st.Uid),
			Gid:     int(st.Gid),
			ModTime: fi.ModTime(),
		}
		if mode&fs.ModeSetuid != 0 {
			h.Mode |= 0o4000
		}
		if mode&fs.ModeSetgid != 0 {
			h.Mode |= 0o2000
		}
		if mode&fs.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		switch {
		case mode.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, rel+"/"
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			h.Typeflag, h.Linkname = tar.TypeSymlink, target
		case mode&fs.ModeNamedPipe != 0:
			h.Typeflag = tar.TypeFifo
		case mode.IsRegular():
			id := inode{uint64(st.Dev), st.Ino}
			if first, seen := links[id]; seen && st.Nlink > 1 {
				h.Typeflag, h.Linkname = tar.TypeLink, first
				break
			}
			if st.Nlink > 1 {
				links[id] = rel
			}
			h.Typeflag, h.Size = tar.TypeReg, fi.Size()
		default:
			// Devices and sockets: a runtime makes its own /dev.
			return nil
		}
		if h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeDir {
			if capab := fileCapability(p); capab != nil {
				h.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": string(capab)}
				h.Format = tar.FormatPAX
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		n, err := io.Copy(tw, f)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if n != h.Size {
			return fmt.Errorf("%s changed while being read", p)
		}
		return nil
	})
}

// fileCapability returns the security.capability attribute of p, or nil.
func fileCapability(p string) []byte {
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, "security.capability", buf)
	if err != nil || n <= 0 {
		return nil
	}
	return buf[:n]
}
