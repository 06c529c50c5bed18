package up

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestHostArch(t *testing.T) {
	for in, want := range map[string]string{"x86_64\n": "amd64", "aarch64": "arm64", "arm64\n": "arm64"} {
		if got, err := hostArch(in); err != nil || got != want {
			t.Errorf("hostArch(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"armv7l", "riscv64", "", "x86_64 extra"} {
		if got, err := hostArch(in); err == nil {
			t.Errorf("hostArch(%q) = %q, want an error", in, got)
		}
	}
}

func sumOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// A release's artifact gives a host of another architecture its sibling; a
// program built by make serves only its own architecture; a sibling that
// is missing is named.
func TestArtifactsFor(t *testing.T) {
	dist := t.TempDir()
	amd, arm := filepath.Join(dist, "kasa-amd64"), filepath.Join(dist, "kasa-arm64")
	if err := os.WriteFile(amd, []byte("amd64 artifact"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := &artifacts{binary: amd, stateDir: t.TempDir()}
	if f, sum, err := a.For("amd64"); err != nil || f != amd || sum != sumOf([]byte("amd64 artifact")) {
		t.Errorf("amd64: %s %s %v", f, sum, err)
	}
	if _, _, err := a.For("arm64"); err == nil || !strings.Contains(err.Error(), "no kasa-arm64 beside it") {
		t.Errorf("arm64 without its artifact: %v", err)
	}
	if err := os.WriteFile(arm, []byte("arm64 artifact"), 0o755); err != nil {
		t.Fatal(err)
	}
	if f, sum, err := a.For("arm64"); err != nil || f != arm || sum != sumOf([]byte("arm64 artifact")) {
		t.Errorf("arm64: %s %s %v", f, sum, err)
	}

	prog := filepath.Join(t.TempDir(), "kasa")
	if err := os.WriteFile(prog, []byte("program"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := &artifacts{binary: prog, stateDir: t.TempDir()}
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	if _, _, err := p.For(other); err == nil || !strings.Contains(err.Error(), "run kasa up from a release") {
		t.Errorf("a program for another architecture: %v", err)
	}
	if f, _, err := p.For(runtime.GOARCH); err != nil || f != prog {
		t.Errorf("its own architecture: %s %v", f, err)
	}
}

// The sum is read from the cache while the file's size, time and inode
// are those recorded, and computed again when any of them changes.
func TestCachedSHA256(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "state", "sums.json")
	file := filepath.Join(dir, "kasa")
	if err := os.WriteFile(file, []byte("one"), 0o755); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(file)
	if sum, err := cachedSHA256(cache, file); err != nil || sum != sumOf([]byte("one")) {
		t.Fatalf("first: %s %v", sum, err)
	}
	if st, err := os.Stat(cache); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the cache: %v %v", st, err)
	}
	// Same size and time: the cached sum, though the bytes changed.
	if err := os.WriteFile(file, []byte("two"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(file, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if sum, _ := cachedSHA256(cache, file); sum != sumOf([]byte("one")) {
		t.Errorf("the cache was not used: %s", sum)
	}
	if err := os.Chtimes(file, fi.ModTime(), fi.ModTime().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if sum, _ := cachedSHA256(cache, file); sum != sumOf([]byte("two")) {
		t.Errorf("a changed file kept its old sum: %s", sum)
	}
	// A cache that is not JSON costs only the hashing.
	if err := os.WriteFile(cache, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if sum, err := cachedSHA256(cache, file); err != nil || sum != sumOf([]byte("two")) {
		t.Errorf("a broken cache: %s %v", sum, err)
	}
	if _, err := cachedSHA256(cache, filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file gave a sum")
	}
}
