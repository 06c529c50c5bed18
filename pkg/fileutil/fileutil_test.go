package fileutil

import (
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
