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

// Write packs the files under dir into w as a payload with its trailer.
func Write(w io.Writer, dir string) error {
	var compressed bytes.Buffer
	zw, err := zstd.NewWriter(&compressed, zstd.WithEncoderLevel(zstd.SpeedBetterCompression))
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
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
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	sum := sha256.Sum256(compressed.Bytes())
	trailer := make([]byte, 0, trailerSize)
	trailer = append(trailer, sum[:]...)
	trailer = binary.LittleEndian.AppendUint64(trailer, uint64(compressed.Len()))
	trailer = append(trailer, magic...)
	if _, err := w.Write(compressed.Bytes()); err != nil {
		return err
	}
	_, err = w.Write(trailer)
	return err
}

// Unpack extracts the payload into its folder of the data dir
// (datadir.Layout.Bundle: <dataDir>/data/<hash>/) unless an earlier start
// did, and returns that folder. Extraction goes to a temporary folder
// first, so a crash never leaves a half-written bundle in use.
func (p *Payload) Unpack(dataDir string) (string, error) {
	dest := datadir.New(dataDir).Bundle(p.Hash)
	if _, err := os.Stat(filepath.Join(dest, doneMarker)); err == nil {
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
	_ = os.RemoveAll(dest) // an incomplete earlier attempt
	if err := os.Rename(tmp, dest); err != nil {
		return "", err
	}
	return dest, os.Chmod(dest, 0o755)
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
