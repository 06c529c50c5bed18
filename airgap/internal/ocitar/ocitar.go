// Package ocitar writes and merges OCI image layouts as single tar archives,
// the form of kasa's system images: `ctr images import` takes one whole and
// keeps each layer as it is stored, so zstd-compressed layers stay
// compressed in containerd's content store (a docker archive cannot say
// that a layer is zstd: containerd's importer labels every compressed layer
// of one as gzip).
//
// An archive holds oci-layout, index.json and blobs/sha256/*. Each name of
// an image is one entry of index.json, with the annotations containerd's
// importer names images by. Archives are reproducible: the same images give
// the same bytes.
package ocitar

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kasa-io/kasa/pkg/fileutil"
)

// The annotations of an index entry that name its image: containerd's
// importer reads the first (a whole reference), other tools the second.
const (
	AnnotationImageName = "io.containerd.image.name"
	AnnotationRefName   = "org.opencontainers.image.ref.name"
)

const layoutFile = `{"imageLayoutVersion":"1.0.0"}`

// Image is one image with the references it is known by.
type Image struct {
	Refs  []name.Tag
	Image v1.Image
}

// RefName is the name containerd gives ref: Docker Hub's references as
// docker.io/..., as containerd spells them, not index.docker.io/....
func RefName(ref name.Tag) string {
	reg := ref.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	return reg + "/" + ref.RepositoryStr() + ":" + ref.TagStr()
}

// Write writes one archive holding images, each blob once.
func Write(w io.Writer, images []Image) error {
	tw := tar.NewWriter(w)
	if err := writeFile(tw, "oci-layout", []byte(layoutFile)); err != nil {
		return err
	}
	written := map[v1.Hash]bool{}
	blob := func(h v1.Hash, open func() (io.ReadCloser, error), size int64) error {
		if written[h] {
			return nil
		}
		written[h] = true
		r, err := open()
		if err != nil {
			return err
		}
		defer r.Close()
		return writeBlob(tw, h, size, r)
	}
	raw := func(b []byte) func() (io.ReadCloser, error) {
		return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	var index v1.IndexManifest
	for _, im := range images {
		if len(im.Refs) == 0 {
			return errors.New("an image without a reference: the archive could not name it")
		}
		layers, err := im.Image.Layers()
		if err != nil {
			return err
		}
		for _, l := range layers {
			d, err := l.Digest()
			if err != nil {
				return err
			}
			size, err := l.Size()
			if err != nil {
				return err
			}
			if err := blob(d, l.Compressed, size); err != nil {
				return fmt.Errorf("layer %s: %w", d, err)
			}
		}
		cfg, err := im.Image.RawConfigFile()
		if err != nil {
			return err
		}
		cfgName, err := im.Image.ConfigName()
		if err != nil {
			return err
		}
		if err := blob(cfgName, raw(cfg), int64(len(cfg))); err != nil {
			return err
		}
		m, err := im.Image.RawManifest()
		if err != nil {
			return err
		}
		digest, err := im.Image.Digest()
		if err != nil {
			return err
		}
		if err := blob(digest, raw(m), int64(len(m))); err != nil {
			return err
		}
		mt, err := im.Image.MediaType()
		if err != nil {
			return err
		}
		cf, err := im.Image.ConfigFile()
		if err != nil {
			return err
		}
		for _, ref := range im.Refs {
			index.Manifests = append(index.Manifests, v1.Descriptor{
				MediaType: mt,
				Size:      int64(len(m)),
				Digest:    digest,
				Platform:  &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant},
				Annotations: map[string]string{
					AnnotationImageName: RefName(ref),
					AnnotationRefName:   ref.TagStr(),
				},
			})
		}
	}
	if err := writeIndex(tw, index); err != nil {
		return err
	}
	return tw.Close()
}

// Merge writes one archive holding every image of the archives ins under
// every name it had there, each blob once. A name in two archives is an
// error: the merged archive could hold only one of the images.
func Merge(w io.Writer, ins []string) error {
	tw := tar.NewWriter(w)
	if err := writeFile(tw, "oci-layout", []byte(layoutFile)); err != nil {
		return err
	}
	written := map[string]bool{}
	from := map[string]string{}
	var index v1.IndexManifest
	for _, in := range ins {
		idx, err := mergeOne(tw, in, written)
		if err != nil {
			return fmt.Errorf("%s: %w", in, err)
		}
		for _, d := range idx.Manifests {
			n := d.Annotations[AnnotationImageName]
			if n == "" {
				return fmt.Errorf("%s: an image (%s) without a name: the merged archive could not name it", in, d.Digest)
			}
			if prev, ok := from[n]; ok {
				return fmt.Errorf("%s is in two archives: %s and %s", n, prev, in)
			}
			from[n] = in
			index.Manifests = append(index.Manifests, d)
		}
	}
	if err := writeIndex(tw, index); err != nil {
		return err
	}
	return tw.Close()
}

// mergeOne copies the blobs of archive in that are not yet written, and
// returns its index.
func mergeOne(tw *tar.Writer, in string, written map[string]bool) (*v1.IndexManifest, error) {
	f, err := os.Open(in)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var idx *v1.IndexManifest
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		p := path.Clean(h.Name)
		switch {
		case p == "index.json":
			if idx, err = v1.ParseIndexManifest(tr); err != nil {
				return nil, fmt.Errorf("index.json: %w", err)
			}
		case strings.HasPrefix(p, "blobs/") && h.Typeflag == tar.TypeReg:
			if written[p] {
				continue
			}
			written[p] = true
			hdr := blobHeader(p, h.Size)
			if err := tw.WriteHeader(hdr); err != nil {
				return nil, err
			}
			if _, err := io.Copy(tw, tr); err != nil {
				return nil, err
			}
		}
	}
	if idx == nil {
		return nil, errors.New("no index.json: not an OCI image archive (airgap/mkimage -oci writes one)")
	}
	return idx, nil
}

func writeIndex(tw *tar.Writer, index v1.IndexManifest) error {
	index.SchemaVersion = 2
	index.MediaType = types.OCIImageIndex
	sort.SliceStable(index.Manifests, func(i, j int) bool {
		return index.Manifests[i].Annotations[AnnotationImageName] < index.Manifests[j].Annotations[AnnotationImageName]
	})
	b, err := json.Marshal(index)
	if err != nil {
		return err
	}
	return writeFile(tw, "index.json", b)
}

func blobHeader(p string, size int64) *tar.Header {
	return &tar.Header{Name: p, Mode: 0o644, Size: size, Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
}

func writeBlob(tw *tar.Writer, h v1.Hash, size int64, r io.Reader) error {
	if err := tw.WriteHeader(blobHeader(path.Join("blobs", h.Algorithm, h.Hex), size)); err != nil {
		return err
	}
	n, err := io.Copy(tw, r)
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("blob %s: %d bytes, want %d", h, n, size)
	}
	return nil
}

func writeFile(tw *tar.Writer, p string, b []byte) error {
	if err := tw.WriteHeader(blobHeader(p, int64(len(b)))); err != nil {
		return err
	}
	_, err := tw.Write(b)
	return err
}

// Extract unpacks archive into dir, as the OCI layout that
// go-containerregistry's layout package reads, and returns its index: for
// checks and tools.
func Extract(archive, dir string) (layout.Path, *v1.IndexManifest, error) {
	p, err := extract(archive, dir)
	if err != nil {
		return "", nil, err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return "", nil, err
	}
	m, err := idx.IndexManifest()
	return p, m, err
}

func extract(archive, dir string) (layout.Path, error) {
	f, err := os.Open(archive)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", err
		}
		p := path.Clean(h.Name)
		inLayout := p == "index.json" || p == "oci-layout" || strings.HasPrefix(p, "blobs/")
		if h.Typeflag != tar.TypeReg || !inLayout {
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", err
		}
		if err := fileutil.WriteFileWith(dst, 0o644, func(w io.Writer) error { _, err := io.Copy(w, tr); return err }); err != nil {
			return "", err
		}
	}
	return layout.FromPath(dir)
}
