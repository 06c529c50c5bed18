package fileutil

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "a", "b", "secret")
	if err := WriteFile(f, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(f, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(f)
	if err != nil || string(b) != "two" {
		t.Fatalf("read %q %v", b, err)
	}
	if st, _ := os.Stat(f); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %o", st.Mode().Perm())
	}
	if entries, _ := os.ReadDir(filepath.Dir(f)); len(entries) != 1 {
		t.Fatalf("temporary files left: %d entries", len(entries))
	}
}

// A write that fails leaves the file as it was, and no temporary file.
func TestWriteFileWithFailure(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "out")
	if err := WriteFile(f, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := WriteFileWith(f, 0o644, func(w io.Writer) error {
		_, _ = w.Write([]byte("half"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want the write's error", err)
	}
	if b, _ := os.ReadFile(f); string(b) != "old" {
		t.Errorf("the file holds %q after a failed write", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d entries left in the folder", len(entries))
	}
}
