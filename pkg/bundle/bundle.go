// Package bundle reads and unpacks the payload that the build appends to the
// kasa binary: the upstream programs and system images that kasa runs beside
// itself (runc, the containerd shim, CNI plugins, crictl, the pause image...).
//
// The payload is a zstd-compressed tar stream followed by a trailer: the
// sha256 of the compressed stream (32 bytes), its length (8 bytes, little
// endian) and the magic "KASABNDL". The loader never maps it, so it costs no
// memory while kasa runs. Unpack extracts it once per content into
// <data-dir>/data/<hash>/, which later starts reuse.
package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/kasa-io/kasa/pkg/datadir"
)

const (
	magic             = "KASABNDL"
	trailerSize int64 = sha256.Size + 8 + int64(len(magic))
	doneMarker        = ".complete"
)

// ArtifactEnv names the release artifact that a kasa program was unpacked
// from: the launcher (cmd/kasa-launcher) sets it, and kasa up uploads that
// file rather than the program.
const ArtifactEnv = "KASA_ARTIFACT"

// ErrNoBundle is returned for a binary built without its payload (a plain
// `go build`); `make` appends it.
var ErrNoBundle = errors.New("this kasa binary carries no bundle of runc, CNI plugins and system images: build it with make")

// Payload locates the bundle inside a file.
type Payload struct {
	File   string
	Offset int64
	Length int64
	Hash   string
}

// Find reads the trailer at the end of file.
func Find(file string) (*Payload, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() < trailerSize {
		return nil, ErrNoBundle
	}
	t := make([]byte, trailerSize)
	if _, err := f.ReadAt(t, st.Size()-trailerSize); err != nil {
		return nil, err
	}
	if string(t[trailerSize-int64(len(magic)):]) != magic {
		return nil, ErrNoBundle
	}
	n := int64(binary.LittleEndian.Uint64(t[sha256.Size : sha256.Size+8]))
	if n <= 0 || n > st.Size()-trailerSize {
		return nil, fmt.Errorf("bundle trailer of %s is damaged", file)
	}
	return &Payload{File: file, Offset: st.Size() - trailerSize - n, Length: n, Hash: hex.EncodeToString(t[:sha256.Size])}, nil
}

// Write packs the files under dir into w as a payload with its trailer,
// compressed as the everyday build wants it: quickly.
func Write(w io.Writer, dir string) error {
	var compressed bytes.Buffer
	zw, err := zstd.NewWriter(&compressed, zstd.WithEncoderLevel(zstd.SpeedBetterCompression))
	if err != nil {
		return err
	}
	if err := Pack(zw, dir); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return Seal(w, &compressed)
}

// Pack writes the files under dir to w as the payload's tar stream, before
// compression: the same files make the same bytes, whatever their times
// and owners.
func Pack(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() && !info.IsDir() {
			return fmt.Errorf("%s: only files and folders can be bundled", p)
		}
		rel, _ := filepath.Rel(dir, p)
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.ModTime = time.Unix(0, 0) // the same parts make the same payload, and the same hash
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// Seal copies a zstd stream of Pack's tar (compressed by any zstd encoder:
// the release's is the zstd program at its highest levels) to w and
// appends the trailer that Find reads.
func Seal(w io.Writer, zst io.Reader) error {
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), zst)
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("the compressed payload is empty")
	}
	trailer := make([]byte, 0, trailerSize)
	trailer = h.Sum(trailer)
	trailer = binary.LittleEndian.AppendUint64(trailer, uint64(n))
	trailer = append(trailer, magic...)
	_, err = w.Write(trailer)
	return err
}

// Unpack extracts the payload into its folder of the data dir
// (datadir.Layout.Bundle: <dataDir>/data/<hash>/) unless an earlier start
// did, and returns that folder. Extraction goes to a temporary folder
// first and is renamed into place whole, so a crash never leaves a
// half-written bundle in use, and of two processes unpacking at once the
// second finds the first one's folder and leaves it alone.
func (p *Payload) Unpack(dataDir string) (string, error) {
	dest := datadir.New(dataDir).Bundle(p.Hash)
	if Complete(dest) {
		return dest, nil
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dest), ".unpack-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := p.extract(tmp); err != nil {
		return "", fmt.Errorf("unpack the bundle of %s: %w", p.File, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, doneMarker), []byte(p.Hash+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dest); err != nil {
		if Complete(dest) {
			return dest, nil // another process unpacked it meanwhile
		}
		// A folder without its marker: left by a kasa that did not
		// rename whole. Nothing runs from it.
		if rerr := os.RemoveAll(dest); rerr != nil {
			return "", rerr
		}
		if err := os.Rename(tmp, dest); err != nil {
			return "", err
		}
	}
	return dest, nil
}

// Complete reports whether dir holds a whole unpacked bundle.
func Complete(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, doneMarker))
	return err == nil
}

// Locate returns the folder of the bundle that belongs to the program exe.
// A kasa that `make` built carries its bundle: it is unpacked into the data
// dir (Unpack). The program of a release artifact carries none: the
// artifact's launcher (cmd/kasa-launcher) unpacked it with the bundle
// around it, as <folder>/bin/kasa, and <folder> is the bundle.
func Locate(exe, dataDir string) (string, error) {
	p, err := Find(exe)
	if err == nil {
		return p.Unpack(dataDir)
	}
	if !errors.Is(err, ErrNoBundle) {
		return "", err
	}
	if dir := filepath.Dir(filepath.Dir(exe)); filepath.Base(filepath.Dir(exe)) == "bin" && Complete(dir) {
		return dir, nil
	}
	return "", err
}

func (p *Payload) extract(dir string) error {
	f, err := os.Open(p.File)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	zr, err := zstd.NewReader(io.TeeReader(io.NewSectionReader(f, p.Offset, p.Length), h))
	if err != nil {
		return err
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name := filepath.FromSlash(hdr.Name)
		if !filepath.IsLocal(name) {
			return fmt.Errorf("unsafe path %q in bundle", hdr.Name)
		}
		target := filepath.Join(dir, name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fs.FileMode(hdr.Mode)&0o755)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected entry %q in bundle", hdr.Name)
		}
	}
	// Read to the end so that the hash covers the whole stream.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, p.Hash) {
		return fmt.Errorf("bundle checksum mismatch: the binary is damaged (want %s, got %s)", p.Hash[:16], got[:16])
	}
	return nil
}
