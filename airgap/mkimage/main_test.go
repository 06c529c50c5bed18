package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kasa-io/kasa/airgap/internal/ocitar"
)

// entry is what a test checks of one tar entry.
type entry struct {
	typ      byte
	mode     int64
	uid, gid int
	link     string
	body     string
}

func readImage(t *testing.T, archive, ref string) (map[string]entry, []string) {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(archive, &tag)
	if err != nil {
		t.Fatalf("image %s in %s: %v", ref, archive, err)
	}
	return layerEntriesOrdered(t, img)
}

func layerEntries(t *testing.T, img v1.Image) map[string]entry {
	t.Helper()
	got, _ := layerEntriesOrdered(t, img)
	return got
}

func layerEntriesOrdered(t *testing.T, img v1.Image) (map[string]entry, []string) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]entry{}
	var order []string
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			got[h.Name] = entry{h.Typeflag, h.Mode, h.Uid, h.Gid, h.Linkname, string(b)}
			order = append(order, h.Name)
		}
		rc.Close()
	}
	return got, order
}

func TestRootfsLayer(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "var/lib/db"), 0o755))
	must(syscall.Chmod(filepath.Join(root, "var/lib/db"), 0o1777))
	must(os.WriteFile(filepath.Join(root, "var/lib/db/conf"), []byte("x=1\n"), 0o640))
	must(os.Chmod(filepath.Join(root, "var/lib/db/conf"), 0o640))
	must(os.MkdirAll(filepath.Join(root, "bin"), 0o755))
	must(os.WriteFile(filepath.Join(root, "bin/tool"), []byte("#!/bin/sh\n"), 0o755))
	must(syscall.Chmod(filepath.Join(root, "bin/tool"), 0o4755))
	must(os.Link(filepath.Join(root, "bin/tool"), filepath.Join(root, "bin/tool2")))
	must(os.Symlink("tool", filepath.Join(root, "bin/alias")))
	must(syscall.Mkfifo(filepath.Join(root, "bin/fifo"), 0o600))
	owner := 0
	if os.Geteuid() == 0 {
		owner = 999
		must(os.Lchown(filepath.Join(root, "var/lib/db"), owner, owner))
		must(os.Lchown(filepath.Join(root, "var/lib/db/conf"), owner, owner))
		// A device node is left out of the layer.
		must(syscall.Mknod(filepath.Join(root, "bin/null"), syscall.S_IFCHR|0o666, 1<<8|3))
	}
	extra := filepath.Join(t.TempDir(), "extra")
	must(os.WriteFile(extra, []byte("on top"), 0o600))

	out := filepath.Join(t.TempDir(), "img.tar")
	err := run(context.Background(), []string{"-o", out, "-ref", "docker.io/library/db:1", "-ref", "example.com/db:latest",
		"-rootfs", root, "-entrypoint", "docker-entrypoint.sh", "-cmd", "db", "-cmd", "-v",
		"-env", "DATA=/var/lib/db", "-port", "5000", "-port", "53/udp", "-workdir", "/var/lib/db",
		"-user", "999", "-volume", "/var/lib/db", "-stopsignal", "SIGINT", extra + "=/etc/extra"})
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"docker.io/library/db:1", "example.com/db:latest"} {
		got, order := readImage(t, out, ref)
		want := map[string]entry{
			"bin/":            {tar.TypeDir, 0o755, 0, 0, "", ""},
			"bin/alias":       {tar.TypeSymlink, 0o777, 0, 0, "tool", ""},
			"bin/fifo":        {tar.TypeFifo, 0o600, 0, 0, "", ""},
			"bin/tool":        {tar.TypeReg, 0o4755, 0, 0, "", "#!/bin/sh\n"},
			"bin/tool2":       {tar.TypeLink, 0o4755, 0, 0, "bin/tool", ""},
			"var/":            {tar.TypeDir, 0o755, 0, 0, "", ""},
			"var/lib/":        {tar.TypeDir, 0o755, 0, 0, "", ""},
			"var/lib/db/":     {tar.TypeDir, 0o1777, owner, owner, "", ""},
			"var/lib/db/conf": {tar.TypeReg, 0o640, owner, owner, "", "x=1\n"},
			"etc/":            {tar.TypeDir, 0o755, 0, 0, "", ""},
			"etc/extra":       {tar.TypeReg, 0o755, 0, 0, "", "on top"},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: layers hold\n%v\nwant\n%v", ref, got, want)
		}
		if order[0] != "bin/" || order[len(order)-1] != "etc/extra" {
			t.Errorf("%s: entries in order %v, want the tree (sorted) first, files last", ref, order)
		}
		tag, _ := name.NewTag(ref)
		img, err := tarball.ImageFromPath(out, &tag)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		c := cf.Config
		if !reflect.DeepEqual(c.Entrypoint, []string{"docker-entrypoint.sh"}) || !reflect.DeepEqual(c.Cmd, []string{"db", "-v"}) {
			t.Errorf("entrypoint %q cmd %q", c.Entrypoint, c.Cmd)
		}
		if !reflect.DeepEqual(c.Env, []string{defaultPath, "DATA=/var/lib/db"}) {
			t.Errorf("env %q", c.Env)
		}
		if _, ok := c.ExposedPorts["5000/tcp"]; !ok || len(c.ExposedPorts) != 2 {
			t.Errorf("ports %v", c.ExposedPorts)
		}
		if _, ok := c.ExposedPorts["53/udp"]; !ok {
			t.Errorf("ports %v", c.ExposedPorts)
		}
		if _, ok := c.Volumes["/var/lib/db"]; !ok {
			t.Errorf("volumes %v", c.Volumes)
		}
		if c.WorkingDir != "/var/lib/db" || c.User != "999" || c.StopSignal != "SIGINT" || cf.OS != "linux" {
			t.Errorf("config %+v", c)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".mkimage*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// The flags scripts/build-bundle.sh uses keep their meaning.
func TestFilesOnly(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(bin, []byte("ELF"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "pause.tar")
	if err := run(context.Background(), []string{"-o", out, "-ref", "kasa.local/pause:3.10.2", "-user", "65532",
		"-entrypoint", "/pause", bin + "=/pause"}); err != nil {
		t.Fatal(err)
	}
	got, _ := readImage(t, out, "kasa.local/pause:3.10.2")
	want := map[string]entry{"pause": {tar.TypeReg, 0o755, 0, 0, "", "ELF"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("layer holds %v, want %v", got, want)
	}
}

// -oci writes an OCI archive whose layers are zstd streams, naming the
// image by each reference and the architecture asked for; the same files
// give the same bytes.
func TestOCI(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "coredns")
	if err := os.WriteFile(bin, bytes.Repeat([]byte("ELF"), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mk := func(out string) {
		t.Helper()
		if err := run(context.Background(), []string{"-o", out, "-oci", "-level", "3", "-arch", "arm64",
			"-ref", "kasa.local/coredns:1.15.0", "-ref", "kasa.local/coredns:latest", "-user", "65532",
			"-entrypoint", "/coredns", bin + "=/coredns"}); err != nil {
			t.Fatal(err)
		}
	}
	a, b := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	mk(a)
	mk(b)
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if !bytes.Equal(ab, bb) {
		t.Error("the same files gave two different archives")
	}
	p, m, err := ocitar.Extract(a, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range m.Manifests {
		names = append(names, d.Annotations[ocitar.AnnotationImageName])
	}
	if want := []string{"kasa.local/coredns:1.15.0", "kasa.local/coredns:latest"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("names %v, want %v", names, want)
	}
	img, err := p.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("manifest %s", mt)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Architecture != "arm64" || cf.OS != "linux" || cf.Config.User != "65532" {
		t.Errorf("config %s/%s user %q", cf.OS, cf.Architecture, cf.Config.User)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %v %v", layers, err)
	}
	if mt, _ := layers[0].MediaType(); mt != types.OCILayerZStd {
		t.Errorf("layer %s", mt)
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 4)
	_, err = io.ReadFull(rc, head)
	rc.Close()
	if err != nil || !bytes.Equal(head, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		t.Errorf("the layer starts %x, not zstd's magic number", head)
	}
	got := layerEntries(t, img)
	want := map[string]entry{"coredns": {tar.TypeReg, 0o755, 0, 0, "", strings.Repeat("ELF", 1000)}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("layer holds %v", got)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".mkimage*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestValidate(t *testing.T) {
	for _, args := range [][]string{
		{"-o", "x.tar", "a=/a"},
		{"-o", "x.tar", "-ref", "r:1"},
		{"-o", "x.tar", "-ref", "r:1", "a=relative"},
		{"-o", "x.tar", "-ref", "r:1", "-port", "http", "a=/a"},
		{"-o", "x.tar", "-ref", "r:1", "-port", "80/icmp", "a=/a"},
		{"-o", "x.tar", "-ref", "r:1", "-env", "NOVALUE", "a=/a"},
		{"-o", "x.tar", "-ref", "r:1", "-workdir", "data", "a=/a"},
		{"-o", "x.tar", "-ref", "r:1", "-rootfs", "/nonexistent/dir"},
		{"-o", "x.tar", "-ref", "Bad Ref", "a=/a"},
		{"-o", "x.tar", "-ref", "r:1", "-arch", "riscv64", "a=/a"},
		{"-o", "x.tar", "-ref", "r:1", "-oci", "-level", "0", "a=/a"},
		{"-o", "x.tar", "-ref", "r@sha256:" + strings.Repeat("a", 64), "-oci", "a=/a"},
	} {
		o, err := parse(args)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := o.validate(); err == nil {
			t.Errorf("%q: validated, want an error", args)
		}
	}
}

// An interrupted build leaves neither an archive nor temporary files.
func TestCanceled(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := run(ctx, []string{"-o", filepath.Join(dir, "img.tar"), "-ref", "r:1", "-rootfs", root})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run with a canceled context: %v, want context.Canceled", err)
	}
	if left, _ := os.ReadDir(dir); len(left) > 0 {
		t.Errorf("left in the output folder: %v", left)
	}
}
