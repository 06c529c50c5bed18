package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func archive(t *testing.T, tags ...string) string {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	refs := map[name.Reference]v1.Image{}
	for _, tag := range tags {
		ref, err := name.ParseReference(tag)
		if err != nil {
			t.Fatal(err)
		}
		refs[ref] = img
	}
	f := filepath.Join(t.TempDir(), "img.tar")
	out, err := os.Create(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.MultiRefWrite(refs, out); err != nil {
		t.Fatal(err)
	}
	out.Close()
	return f
}

// Two archives merge into one that names every image by every reference
// it had, with the layers as they were; a reference in two archives is
// refused.
func TestMerge(t *testing.T) {
	a := archive(t, "kasa.local/pause:1", "kasa.local/pause:latest")
	b := archive(t, "kasa.local/coredns:2")
	refs := map[name.Reference]v1.Image{}
	for _, in := range []string{a, b} {
		if err := add(refs, in); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for r := range refs {
		got = append(got, r.Name())
	}
	slices.Sort(got)
	want := []string{"kasa.local/coredns:2", "kasa.local/pause:1", "kasa.local/pause:latest"}
	if !slices.Equal(got, want) {
		t.Fatalf("references %v, want %v", got, want)
	}
	if err := add(refs, archive(t, "kasa.local/coredns:2")); err == nil {
		t.Error("a reference in two archives was taken")
	}
}
