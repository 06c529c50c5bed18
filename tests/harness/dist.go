package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDist is the release of this build that scripts/release.sh wrote for
// the suites (the Makefile's e2e target: $KASA_TEST_DIST, laid out as
// dist/ is).
func TestDist(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("KASA_TEST_DIST")
	if dir == "" {
		t.Fatal("KASA_TEST_DIST is not set: run these tests through make (make e2e writes a release of this build)")
	}
	if _, err := os.Stat(filepath.Join(dir, "latest")); err != nil {
		t.Fatalf("KASA_TEST_DIST: %v", err)
	}
	return dir
}

// TestDistVersion is the version of TestDist's release (its latest file).
func TestDistVersion(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(TestDist(t), "latest"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
