package bundle

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/kasa-io/kasa/pkg/datadir"
)

func TestRoundTrip(t *testing.T) {
	src := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(src, "bin"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "bin", "tool"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "images.txt"), []byte("pause\n"), 0o644))

	// A fake executable: some bytes, then the payload.
	exe := filepath.Join(t.TempDir(), "kasa")
	var buf bytes.Buffer
	buf.WriteString("\x7fELF not really a program")
	must(t, Write(&buf, src))
	must(t, os.WriteFile(exe, buf.Bytes(), 0o755))

	p, err := Find(exe)
	must(t, err)
	data := t.TempDir()
	dir, err := p.Unpack(data)
	must(t, err)
	if want := datadir.New(data).Bundle(p.Hash); dir != want {
		t.Errorf("unpacked to %s, want %s", dir, want)
	}
	got, err := os.ReadFile(filepath.Join(dir, "bin", "tool"))
	must(t, err)
	if string(got) != "#!/bin/sh\necho hi\n" {
		t.Fatalf("tool = %q", got)
	}
	if st, _ := os.Stat(filepath.Join(dir, "bin", "tool")); st.Mode().Perm()&0o100 == 0 {
		t.Fatal("tool lost its execute bit")
	}
	// A second unpack reuses the folder.
	must(t, os.WriteFile(filepath.Join(dir, "marker"), nil, 0o644))
	again, err := p.Unpack(data)
	must(t, err)
	if again != dir {
		t.Fatalf("unpacked to %s then %s", dir, again)
	}
	if _, err := os.Stat(filepath.Join(dir, "marker")); err != nil {
		t.Fatal("the second unpack replaced the folder")
	}
}

func TestNoBundleAndDamage(t *testing.T) {
	plain := filepath.Join(t.TempDir(), "plain")
	must(t, os.WriteFile(plain, []byte("just a program, long enough to hold a trailer of fifty-six bytes......"), 0o755))
	if _, err := Find(plain); !errors.Is(err, ErrNoBundle) {
		t.Fatalf("got %v, want ErrNoBundle", err)
	}

	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "f"), bytes.Repeat([]byte("x"), 4096), 0o644))
	var buf bytes.Buffer
	must(t, Write(&buf, src))
	b := buf.Bytes()
	b[10] ^= 0xff // damage the compressed stream
	exe := filepath.Join(t.TempDir(), "kasa")
	must(t, os.WriteFile(exe, b, 0o755))
	p, err := Find(exe)
	must(t, err)
	data := t.TempDir()
	if _, err := p.Unpack(data); err == nil {
		t.Fatal("a damaged bundle unpacked")
	}
	if entries, _ := os.ReadDir(datadir.New(data).Bundles()); len(entries) != 0 {
		t.Fatalf("a failed unpack left %d entries behind", len(entries))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestWriteIsReproducible(t *testing.T) {
	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "f"), []byte("same"), 0o644))
	var a, b bytes.Buffer
	must(t, Write(&a, src))
	// The same content with another modification time packs the same.
	must(t, os.Chtimes(filepath.Join(src, "f"), time.Now(), time.Now().Add(-time.Hour)))
	must(t, Write(&b, src))
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("the payload depends on file times")
	}
}

// A payload compressed by another zstd encoder and sealed unpacks the same,
// and the program of an unpacked release finds the folder around it.
func TestSealAndLocate(t *testing.T) {
	src := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(src, "bin"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "bin", "kasa"), []byte("program"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "bin", "runc"), []byte("runc"), 0o755))
	var tarball bytes.Buffer
	must(t, Pack(&tarball, src))
	var zst bytes.Buffer
	zw, err := zstd.NewWriter(&zst, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithWindowSize(1<<20))
	must(t, err)
	_, err = zw.Write(tarball.Bytes())
	must(t, err)
	must(t, zw.Close())
	launcher := filepath.Join(t.TempDir(), "kasa")
	var art bytes.Buffer
	art.WriteString("\x7fELF the launcher")
	must(t, Seal(&art, &zst))
	must(t, os.WriteFile(launcher, art.Bytes(), 0o755))
	p, err := Find(launcher)
	must(t, err)
	data := t.TempDir()
	dir, err := p.Unpack(data)
	must(t, err)
	prog := filepath.Join(dir, "bin", "kasa")
	if got, _ := os.ReadFile(prog); string(got) != "program" {
		t.Fatalf("unpacked program = %q", got)
	}
	// The unpacked program carries no bundle: Locate finds its folder.
	got, err := Locate(prog, t.TempDir())
	must(t, err)
	if got != dir {
		t.Errorf("Locate(%s) = %s, want %s", prog, got, dir)
	}
	// A program that is neither: no bundle, and no folder marked whole.
	must(t, os.Remove(filepath.Join(dir, doneMarker)))
	if _, err := Locate(prog, t.TempDir()); !errors.Is(err, ErrNoBundle) {
		t.Errorf("Locate without the marker: %v, want ErrNoBundle", err)
	}
	// A kasa that carries its bundle is unpacked into the data dir.
	if got, err := Locate(launcher, data); err != nil || got != dir {
		t.Errorf("Locate(launcher) = %s, %v", got, err)
	}
	if err := Seal(&art, bytes.NewReader(nil)); err == nil {
		t.Error("an empty stream was sealed")
	}
}

// Two processes that unpack at once both end with the one whole folder.
func TestUnpackRace(t *testing.T) {
	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "f"), bytes.Repeat([]byte("y"), 1<<16), 0o644))
	var buf bytes.Buffer
	must(t, Write(&buf, src))
	exe := filepath.Join(t.TempDir(), "kasa")
	must(t, os.WriteFile(exe, buf.Bytes(), 0o755))
	p, err := Find(exe)
	must(t, err)
	data := t.TempDir()
	errs := make(chan error, 4)
	dirs := make(chan string, 4)
	for range 4 {
		go func() {
			d, err := p.Unpack(data)
			errs <- err
			dirs <- d
		}()
	}
	for range 4 {
		must(t, <-errs)
		if d := <-dirs; !Complete(d) {
			t.Errorf("%s is not whole", d)
		}
	}
	if entries, _ := os.ReadDir(datadir.New(data).Bundles()); len(entries) != 1 {
		t.Errorf("the data folder holds %d entries, want the one bundle", len(entries))
	}
}
