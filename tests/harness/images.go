package harness

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	src, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer src.Close()
	// Written under a hidden name and renamed, so the node never reads a
	// half-copied archive.
	tmp := filepath.Join(dir, "."+filepath.Base(archive)+".tmp")
	dst, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, filepath.Base(archive)))
}

// AppImages lists the stand-in images of the catalog's apps that
// scripts/build-test-images.sh made: the archives in $KASA_TEST_IMAGES,
// which the Makefile sets.
func AppImages() ([]string, error) {
	dir := os.Getenv("KASA_TEST_IMAGES")
	if dir == "" {
		return nil, errors.New("KASA_TEST_IMAGES is not set: run these tests through make (make e2e builds the images)")
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.tar"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no image archives in %s: scripts/build-test-images.sh makes them", dir)
	}
	return files, nil
}

// AppImage returns the stand-in archive that holds the image reference
// (images.txt beside the archives lists each archive's references).
func AppImage(ref string) (string, error) {
	dir := os.Getenv("KASA_TEST_IMAGES")
	if dir == "" {
		return "", errors.New("KASA_TEST_IMAGES is not set: run this through make")
	}
	list, err := os.ReadFile(filepath.Join(dir, "images.txt"))
	if err != nil {
		return "", fmt.Errorf("%w (scripts/build-test-images.sh writes it)", err)
	}
	for _, line := range strings.Split(string(list), "\n") {
		fields := strings.Fields(line)
		for _, f := range fields[min(1, len(fields)):] {
			if f == ref {
				return filepath.Join(dir, fields[0]), nil
			}
		}
	}
	return "", fmt.Errorf("no archive in %s holds %s", dir, ref)
}

// ImagesImported says whether the node's containerd has every reference
// (through `kasa ctr images ls`), naming the first one missing.
func (s *Server) ImagesImported(refs ...string) error {
	cmd := s.Command("ctr", "images", "ls", "-q")
	cmd.Env = append(cmd.Env, "KASA_DATA_DIR="+s.DataDir)
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("kasa ctr images ls: %w", err)
	}
	have := strings.Fields(string(out))
	for _, ref := range refs {
		if !slices.Contains(have, ref) {
			return fmt.Errorf("%s not imported yet", ref)
		}
	}
	return nil
}
