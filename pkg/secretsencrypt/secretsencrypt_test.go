package secretsencrypt

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/server/options/encryptionconfig"
	"k8s.io/apiserver/pkg/storage/value"
)

var now = time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)

// upstream loads the file at path as the API server does and returns the
// transformer of Secrets.
func upstream(t *testing.T, path string) value.Transformer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ec, err := encryptionconfig.LoadEncryptionConfig(ctx, path, true, "test")
	if err != nil {
		t.Fatalf("the API server refuses the file: %v", err)
	}
	tr, ok := ec.Transformers[schema.GroupResource{Resource: "secrets"}]
	if !ok {
		t.Fatal("the file does not cover secrets")
	}
	return tr
}

// TestRenderUpstream: the API server takes each file kasa writes, writes
// under the write key (StoredUnder names it), and reads what the other
// keys and plaintext stored.
func TestRenderUpstream(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	dataCtx := value.DefaultContext("/registry/secrets/default/s")
	plain := []byte("the secret's bytes")

	gcm, err := NewKey(AESGCM, now)
	if err != nil {
		t.Fatal(err)
	}
	box, err := NewKey(Secretbox, now.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	box2, err := NewKey(Secretbox, now.Add(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// What each configuration stores plain as, to read back in the next.
	var stored [][]byte
	for i, c := range []Config{
		{},
		{Write: &gcm},
		{Write: &box, Read: []Key{gcm}},
		{Write: &box2, Read: []Key{box, gcm}},
		{Read: []Key{box2, box, gcm}},
	} {
		path := filepath.Join(dir, "c.yaml")
		if err := Save(path, c); err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Errorf("%d: mode %v, want 0600", i, fi.Mode().Perm())
		}
		back, ok, err := Load(path)
		if err != nil || !ok || !equal(back, c) {
			t.Fatalf("%d: read back %s (%v, %v), want %s", i, ids(back), ok, err, ids(c))
		}
		tr := upstream(t, path)
		out, err := tr.TransformToStorage(ctx, plain, dataCtx)
		if err != nil {
			t.Fatal(err)
		}
		if got := StoredUnder(out); got != c.WriteID() {
			t.Errorf("%d: stored under %s, want %s", i, got, c.WriteID())
		}
		if c.Write != nil && bytes.Contains(out, plain) {
			t.Errorf("%d: the plaintext is in the stored value", i)
		}
		for j, s := range stored {
			got, stale, err := tr.TransformFromStorage(ctx, s, dataCtx)
			if err != nil || !bytes.Equal(got, plain) {
				t.Errorf("%d: cannot read what configuration %d stored: %v", i, j, err)
			}
			if want := StoredUnder(s) != c.WriteID(); stale != want {
				t.Errorf("%d: what %d stored is stale=%v, want %v", i, j, stale, want)
			}
		}
		stored = append(stored, out)
	}
}

func TestEnsure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "encryption-config.yaml")
	if _, ok, err := Ensure(path, false, Secretbox, now); ok || err != nil {
		t.Fatalf("off, no file: made one (%v)", err)
	}
	on, ok, err := Ensure(path, true, Secretbox, now)
	if err != nil || !ok || on.Write == nil || on.Write.Provider != Secretbox {
		t.Fatalf("on: %+v, %v", on, err)
	}
	again, _, _ := Ensure(path, true, Secretbox, now.Add(time.Hour))
	if !equal(again, on) {
		t.Error("a second start with the same flags changed the keys")
	}
	off, ok, err := Ensure(path, false, Secretbox, now)
	if err != nil || !ok || off.Write != nil || len(off.Read) != 1 || off.Read[0].Name != on.Write.Name {
		t.Fatalf("off again: %+v, %v; want identity writing and the key kept", off, err)
	}
	back, _, _ := Ensure(path, true, Secretbox, now.Add(time.Hour))
	if back.Write == nil || back.Write.Name != on.Write.Name || len(back.Read) != 0 {
		t.Errorf("on again: %+v; want the kept key writing again", back)
	}
	gcm, _, _ := Ensure(path, true, AESGCM, now.Add(time.Hour))
	if gcm.Write == nil || gcm.Write.Provider != AESGCM || len(gcm.Read) != 1 || gcm.Read[0].Name != on.Write.Name {
		t.Errorf("another provider: %+v; want a new aesgcm key writing and the secretbox key kept", gcm)
	}
	if _, _, err := Ensure(path, true, "aescbc", now); err == nil {
		t.Error("an unknown provider was taken")
	}
}

func TestRotated(t *testing.T) {
	k, _ := NewKey(Secretbox, now)
	c := Config{Write: &k}
	r, err := c.Rotated(now.Add(time.Minute))
	if err != nil || r.Write.Provider != Secretbox || r.Write.Name == k.Name || len(r.Read) != 1 || r.Read[0].Name != k.Name {
		t.Fatalf("rotated: %+v, %v; want a new secretbox key, the old one kept", r, err)
	}
	if _, err := c.Rotated(now); err == nil {
		t.Error("a key of the same name was made")
	}
	if _, err := (Config{}).Rotated(now); err == nil {
		t.Error("plaintext was rotated")
	}
}

func TestParseRefuses(t *testing.T) {
	for _, bad := range []string{
		"not: [yaml",
		"apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [configmaps]\n  providers:\n  - identity: {}\n",
		"apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n      - name: k\n        secret: c2VjcmV0\n",
		"apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - name: k\n        secret: c2VjcmV0\n",
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("took %q", bad)
		}
	}
}

// ids names c's keys, without their secrets.
func ids(c Config) string {
	s := "write " + c.WriteID() + ", read"
	for _, k := range c.Read {
		s += " " + k.ID()
	}
	return s
}
