package bundle

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

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
