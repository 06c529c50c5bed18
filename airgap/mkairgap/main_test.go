package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The command's own errors: its usage, and an input that is not an OCI
// archive, which leaves no output behind (ocitar's tests cover the merge).
func TestRun(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "all.tar")
	if err := run([]string{"-o", out}); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("no input: %v", err)
	}
	bad := filepath.Join(dir, "bad.tar")
	if err := os.WriteFile(bad, []byte("not a tar"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-o", out, bad}); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("a file that is not an archive: %v", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 1 {
		t.Errorf("files left: %v", left)
	}
}
