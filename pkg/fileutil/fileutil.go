// Package fileutil writes files the way kasa's state needs: atomically, with
// the mode given, so a crash never leaves a half-written file in place.
package fileutil

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
)

// WriteFile writes data to file atomically (a temporary file renamed into
// place), creating the parent folder, with the given mode.
func WriteFile(file string, data []byte, mode os.FileMode) error {
	return WriteFileFrom(file, bytes.NewReader(data), mode)
}

// WriteFileFrom is WriteFile with the data read from r.
func WriteFileFrom(file string, r io.Reader, mode os.FileMode) error {
	return WriteFileWith(file, mode, func(w io.Writer) error {
		_, err := io.Copy(w, r)
		return err
	})
}

// WriteFileWith is WriteFile with the data written by write (a tar or
// archive writer); when write fails, file is left as it was.
func WriteFileWith(file string, mode os.FileMode, write func(io.Writer) error) error {
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(file)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}

// SHA256 returns the sha256 of the file's bytes, in hex.
func SHA256(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
