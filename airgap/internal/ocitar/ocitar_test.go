package ocitar

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func image(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	return mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
}

func tags(t *testing.T, refs ...string) []name.Tag {
	t.Helper()
	var out []name.Tag
	for _, r := range refs {
		tag, err := name.NewTag(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tag)
	}
	return out
}

func write(t *testing.T, images ...Image) string {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, images); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "images.tar")
	if err := os.WriteFile(f, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// names lists the images of an extracted archive by name, and checks that
// each entry's image reads whole, its layers matching their digests.
func names(t *testing.T, archive string) (map[string]v1.Hash, int) {
	t.Helper()
	p, m, err := Extract(archive, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]v1.Hash{}
	for _, d := range m.Manifests {
		img, err := p.Image(d.Digest)
		if err != nil {
			t.Fatalf("%s: %v", d.Digest, err)
		}
		if err := validate(img); err != nil {
			t.Fatalf("%s: %v", d.Annotations[AnnotationImageName], err)
		}
		got[d.Annotations[AnnotationImageName]] = d.Digest
	}
	blobs := 0
	for _, e := range entries(t, archive) {
		if strings.HasPrefix(e, "blobs/") {
			blobs++
		}
	}
	return got, blobs
}

// entries lists the archive's tar entries in order.
func entries(t *testing.T, archive string) []string {
	t.Helper()
	r, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tr := tar.NewReader(r)
	var order []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, h.Name)
	}
	return order
}

func validate(img v1.Image) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		h, _, err := v1.SHA256(rc)
		rc.Close()
		if err != nil {
			return err
		}
		if d, _ := l.Digest(); d != h {
			return errors.New("a layer's bytes do not match its digest")
		}
	}
	_, err = img.ConfigFile()
	return err
}

// An archive names its image by every reference, as containerd reads them,
// and holds each blob once; the same images give the same bytes.
func TestWrite(t *testing.T) {
	img := image(t)
	a := write(t, Image{Refs: tags(t, "kasa.local/pause:1", "kasa.local/pause:latest"), Image: img})
	got, blobs := names(t, a)
	d, _ := img.Digest()
	want := map[string]v1.Hash{"kasa.local/pause:1": d, "kasa.local/pause:latest": d}
	if !maps(got, want) {
		t.Fatalf("names %v, want %v", got, want)
	}
	if blobs != 4 { // two layers, the config and the manifest
		t.Errorf("%d blobs, want 4", blobs)
	}
	b := write(t, Image{Refs: tags(t, "kasa.local/pause:1", "kasa.local/pause:latest"), Image: img})
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if !bytes.Equal(ab, bb) {
		t.Error("the same image written twice gave different archives")
	}
	var buf bytes.Buffer
	if err := Write(&buf, []Image{{Image: img}}); err == nil {
		t.Error("an image without a name was written")
	}
}

func maps(a, b map[string]v1.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Archives merge into one that names every image by every name it had, each
// blob once; a name in two archives, and an archive that is not an OCI
// layout, are refused.
func TestMerge(t *testing.T) {
	pause, coredns := image(t), image(t)
	a := write(t, Image{Refs: tags(t, "kasa.local/pause:1", "kasa.local/pause:latest"), Image: pause})
	b := write(t, Image{Refs: tags(t, "kasa.local/coredns:2"), Image: coredns})
	// The same image under another name shares its blobs.
	c := write(t, Image{Refs: tags(t, "kasa.local/pause:again"), Image: pause})
	out := filepath.Join(t.TempDir(), "all.tar")
	merge := func(ins ...string) error {
		var buf bytes.Buffer
		err := Merge(&buf, ins)
		if err == nil {
			err = os.WriteFile(out, buf.Bytes(), 0o644)
		}
		return err
	}
	if err := merge(a, b, c); err != nil {
		t.Fatal(err)
	}
	got, blobs := names(t, out)
	var list []string
	for n := range got {
		list = append(list, n)
	}
	slices.Sort(list)
	want := []string{"kasa.local/coredns:2", "kasa.local/pause:1", "kasa.local/pause:again", "kasa.local/pause:latest"}
	if !slices.Equal(list, want) {
		t.Fatalf("names %v, want %v", list, want)
	}
	if blobs != 8 {
		t.Errorf("%d blobs, want 8 (two images of two layers, a config and a manifest each)", blobs)
	}
	if err := merge(a, write(t, Image{Refs: tags(t, "kasa.local/pause:1"), Image: coredns})); err == nil ||
		!strings.Contains(err.Error(), "kasa.local/pause:1 is in two archives") {
		t.Errorf("a name in two archives: %v", err)
	}
	docker := filepath.Join(t.TempDir(), "docker.tar")
	tag := tags(t, "kasa.local/pause:1")[0]
	if err := tarball.WriteToFile(docker, tag, pause); err != nil {
		t.Fatal(err)
	}
	if err := merge(docker); err == nil || !strings.Contains(err.Error(), "not an OCI image archive") {
		t.Errorf("a docker archive: %v", err)
	}
}

// Docker Hub's references keep the name containerd gives them.
func TestRefName(t *testing.T) {
	for ref, want := range map[string]string{
		"redis:7.4":                 "docker.io/library/redis:7.4",
		"docker.io/bitnami/x:1":     "docker.io/bitnami/x:1",
		"kasa.local/pause:3.10.2":   "kasa.local/pause:3.10.2",
		"mirror.local:5000/a/b:c-1": "mirror.local:5000/a/b:c-1",
	} {
		if got := RefName(tags(t, ref)[0]); got != want {
			t.Errorf("RefName(%s) = %s, want %s", ref, got, want)
		}
	}
}

// The archive is a plain tar that a tar reader lists: oci-layout first,
// index.json last.
func TestOrder(t *testing.T) {
	order := entries(t, write(t, Image{Refs: tags(t, "kasa.local/pause:1"), Image: image(t)}))
	if len(order) < 2 || order[0] != "oci-layout" || order[len(order)-1] != "index.json" {
		t.Errorf("entries %v", order)
	}
}
