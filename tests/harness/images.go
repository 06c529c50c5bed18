package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// TestImage is the reference of the suites' test image.
const TestImage = "kasa.local/e2e/web:1"

// BuildTestImage builds tests/e2e/testimage from source and writes it as an
// image archive to out, with airgap/mkimage: no registry involved.
func BuildTestImage(out string) error {
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return fmt.Errorf("find the module: %w", err)
	}
	dir := strings.TrimSpace(string(root))
	tmp, err := os.MkdirTemp("", "kasa-testimage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "testimage")
	build := exec.Command("go", "build", "-o", bin, "./tests/e2e/testimage")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build the test image's program: %w\n%s", err, b)
	}
	mk := exec.Command("go", "run", "./airgap/mkimage", "-o", out, "-ref", TestImage,
		"-user", "65534", "-entrypoint", "/testimage", bin+"=/testimage")
	mk.Dir = dir
	if b, err := mk.CombinedOutput(); err != nil {
		return fmt.Errorf("make the test image: %w\n%s", err, b)
	}
	return nil
}

// DropImage puts an archive into a running node's images folder, where the
// node imports it within seconds.
func (s *Server) DropImage(archive string) error {
	dir := filepath.Join(s.DataDir, "agent", "images")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := os.ReadFile(archive)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+filepath.Base(archive)+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, filepath.Base(archive)))
}
